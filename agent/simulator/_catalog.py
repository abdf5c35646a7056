"""Package catalogs shared by every simulated guest of a family.

Why a shared catalog: 10,000 guests x ~1,500 packages is 15 million packages. Each guest
keeps only compact arrays of catalog indices and upgrade levels; names, versions and
dpkg stanza text come from here, built once per process from a fixed seed (so the same
catalog on every run and every machine).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Final


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Real package names first: the base every guest of the family has, in this order.
DEBIAN_BASE: Final = _words(
    "adduser apt apt-utils base-files base-passwd bash bsdutils ca-certificates coreutils "
    "cron curl dash debconf debian-archive-keyring debianutils diffutils dmidecode dpkg "
    "e2fsprogs findutils gcc-12-base gpgv grep gzip hostname ifupdown init init-system-helpers "
    "iproute2 iputils-ping isc-dhcp-client kmod less libacl1 libapt-pkg6.0 libattr1 "
    "libaudit-common libaudit1 libblkid1 libbz2-1.0 libc-bin libc6 libcap-ng0 libcap2 "
    "libcom-err2 libcrypt1 libcurl4 libdb5.3 libdebconfclient0 libext2fs2 libffi8 libgcc-s1 "
    "libgcrypt20 libgmp10 libgnutls30 libgpg-error0 libgssapi-krb5-2 libhogweed6 libidn2-0 "
    "libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblz4-1 liblzma5 libmd0 libmount1 "
    "libncursesw6 libnettle8 libnghttp2-14 libp11-kit0 libpam-modules libpam-modules-bin "
    "libpam-runtime libpam0g libpcre2-8-0 libpsl5 librtmp1 libseccomp2 libselinux1 "
    "libsemanage-common libsemanage2 libsepol2 libsmartcols1 libss2 libssh2-1 libssl3 "
    "libstdc++6 libsystemd-shared libsystemd0 libtasn1-6 libtinfo6 libudev1 libunistring2 "
    "libuuid1 libxxhash0 libzstd1 login logrotate lsb-base mawk mount nano ncurses-base "
    "ncurses-bin netbase openssh-client openssh-server openssh-sftp-server openssl passwd "
    "perl-base procps qemu-guest-agent readline-common rsyslog sed sensible-utils sudo "
    "systemd systemd-sysv sysvinit-utils tar tzdata udev util-linux vim-common vim-tiny wget "
    "zlib1g"
)

RPM_BASE: Final = _words(
    "acl alternatives audit audit-libs basesystem bash bzip2-libs ca-certificates chrony "
    "coreutils coreutils-common cpio cracklib crypto-policies cronie curl cyrus-sasl-lib dbus "
    "dbus-broker dbus-libs device-mapper dhcp-client diffutils dnf dnf-data dracut e2fsprogs "
    "elfutils-libelf expat file-libs filesystem findutils firewalld gawk gdbm-libs glib2 glibc "
    "glibc-common glibc-minimal-langpack gmp gnupg2 gnutls grep grub2-common grub2-pc gzip "
    "hostname hwdata info iproute iptables-libs iputils json-c kbd keyutils-libs kmod "
    "kmod-libs krb5-libs less libacl libarchive libattr libblkid libcap libcap-ng libcom_err "
    "libcurl libdb libdnf libedit libevent libfdisk libffi libgcc libgcrypt libgpg-error "
    "libidn2 libmodulemd libmount libnghttp2 libpsl librepo libseccomp libselinux libsemanage "
    "libsepol libsigsegv libsmartcols libsolv libssh libstdc++ libtasn1 libunistring libuuid "
    "libverto libxml2 libyaml libzstd logrotate lua-libs lz4-libs ncurses ncurses-base "
    "ncurses-libs nettle newt openldap openssh openssh-clients openssh-server openssl "
    "openssl-libs p11-kit pam passwd pcre2 policycoreutils popt procps-ng python3 python3-dnf "
    "python3-libs qemu-guest-agent readline rootfiles rpm rpm-libs rsyslog sed selinux-policy "
    "setup shadow-utils sqlite-libs sudo systemd systemd-libs systemd-pam tar tzdata "
    "util-linux vim-minimal which xz xz-libs zlib"
)

_SYLLABLES: Final = _words(
    "ab ac ad al am an ap ar as at ba be bi bo bu ca ce ci co cu da de di do du el em en er "
    "es et fa fe fi fo ga ge gi go ha he hi ho ic id il im in io ip ir is it ka ke ki ko la "
    "le li lo lu ma me mi mo mu na ne ni no nu ob od ol om on op or os ot pa pe pi po pu ra "
    "re ri ro ru sa se si so su ta te ti to tu ul um un ur us va ve vi vo xa xe xi za ze zo"
)
_DEBIAN_PREFIXES: Final = ("lib", "python3-", "perl-", "node-", "golang-", "fonts-", "r-cran-", "")
_RPM_PREFIXES: Final = ("lib", "python3-", "perl-", "golang-", "rubygem-", "texlive-", "")
_SECTIONS: Final = ("libs", "utils", "admin", "net", "python", "perl", "devel", "misc", "web")
_MAINTAINERS: Final = (
    "Debian QA Group <packages@qa.debian.org>",
    "Debian Python Team <team+python@tracker.debian.org>",
    "Debian Perl Group <pkg-perl-maintainers@lists.alioth.debian.org>",
    "Debian Go Packaging Team <team+pkg-go@tracker.debian.org>",
    "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
)
CATALOG_SIZE: Final = 4000
_BASE_NOARCH: Final = frozenset(
    _words(
        "adduser base-passwd ca-certificates debconf debian-archive-keyring "
        "init-system-helpers libaudit-common libpam-runtime libsemanage-common lsb-base "
        "ncurses-base netbase readline-common sensible-utils tzdata basesystem "
        "crypto-policies dnf dnf-data grub2-common hwdata python3-dnf rootfiles "
        "selinux-policy setup"
    )
)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One package as every guest of a family knows it; the version is computed."""

    name: str
    upstream: str
    revision: int
    epoch: int
    noarch: bool  # "all" on Debian, "noarch" on RPM
    stanza_head: str  # dpkg fields before Architecture (Debian family only)
    stanza_tail: str  # dpkg fields after Version (Debian family only)


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def _upstream(rng: random.Random) -> str:
    parts = [str(rng.randint(0, 12)), str(rng.randint(0, 40))]
    if rng.random() < 0.6:
        parts.append(str(rng.randint(0, 30)))
    return ".".join(parts)


@functools.cache
def catalog(family: str) -> tuple[CatalogEntry, ...]:
    """The family's catalog ("debian" or "rpm"): base packages, then synthetic ones."""
    rng = random.Random(f"guestwatch-catalog-{family}")  # noqa: S311  (simulation, not crypto)
    base = DEBIAN_BASE if family == "debian" else RPM_BASE
    prefixes = _DEBIAN_PREFIXES if family == "debian" else _RPM_PREFIXES
    names = list(base)
    seen = set(names)
    while len(names) < CATALOG_SIZE:
        name = rng.choice(prefixes) + _word(rng)
        if name.startswith("lib") and family == "debian" and rng.random() < 0.5:
            name += str(rng.randint(0, 9))
        if name not in seen:
            seen.add(name)
            names.append(name)
    entries = []
    seen_base = set(base)
    for name in names:
        if name in seen_base:
            noarch = name in _BASE_NOARCH
        else:
            noarch = name.startswith(("python3-", "perl-", "fonts-", "node-", "texlive-")) or (
                rng.random() < 0.1
            )
        epoch = 1 if rng.random() < 0.05 else 0
        head = tail = ""
        if family == "debian":
            section = "libs" if name.startswith("lib") else rng.choice(_SECTIONS)
            priority = (
                "required"
                if name in DEBIAN_BASE[:40]
                else rng.choice(("optional", "optional", "important", "standard"))
            )
            head = (
                f"Priority: {priority}\nSection: {section}\n"
                f"Installed-Size: {rng.randint(12, 60000)}\n"
                f"Maintainer: {rng.choice(_MAINTAINERS)}\n"
            )
            tail_lines = []
            if rng.random() < 0.6:
                deps = ", ".join(rng.sample(DEBIAN_BASE, rng.randint(1, 4)))
                tail_lines.append(f"Depends: {deps}")
            if rng.random() < 0.1:
                tail_lines.append(
                    f"Conffiles:\n /etc/{name}/{name}.conf {rng.getrandbits(128):032x}"
                )
            tail_lines.append(
                f"Description: {name} for the simulated guest\n"
                f" This package is part of the guestwatch simulator's catalog.\n"
                f" .\n It has a multi-line description, as real packages do."
            )
            if rng.random() < 0.5:
                tail_lines.append(f"Homepage: https://example.org/{name}")
            tail = "\n".join(tail_lines) + "\n"
        entries.append(
            CatalogEntry(
                name=name,
                upstream=_upstream(rng),
                revision=rng.randint(1, 30),
                epoch=epoch,
                noarch=noarch,
                stanza_head=head,
                stanza_tail=tail,
            )
        )
    return tuple(entries)


BASE_COUNT: Final = {"debian": len(DEBIAN_BASE), "rpm": len(RPM_BASE)}
