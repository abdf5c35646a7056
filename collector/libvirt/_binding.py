"""The optional libvirt-python binding (`pip install 'guestwatch[libvirt]'`), imported once.

Only modules under collector/libvirt import it, and only when `[discovery.libvirt] uri` is
set, so guestwatch runs without libvirt-python where libvirt is not used.
"""

from __future__ import annotations

try:
    import libvirt  # type: ignore[import-untyped,import-not-found,unused-ignore]
    import libvirt_qemu  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "libvirt discovery needs libvirt-python: pip install 'guestwatch[libvirt]' "
        "(builds against libvirt-dev and pkg-config)"
    ) from exc

__all__ = ["libvirt", "libvirt_qemu"]
