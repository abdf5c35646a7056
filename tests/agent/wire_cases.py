# ruff: noqa: E501
"""Exchanges recorded from a real qemu-ga 7.2.22 (Debian 12), one connection each, in order.

Recorded on a freshly started agent, so the cases depend on each other: the agent's
JSON lexer keeps its state (e.g. error recovery) from one connection to the next.
Only guest-independent commands: the replies are the same whatever the guest."""

CASES: list[tuple[bytes, bytes]] = [
    (
        b'\xff{"execute":"guest-sync-delimited","arguments":{"id":424242}}\n',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 424242}\n',
    ),
    (b'{"execute": "guest-ping"}\n', b'{"return": {}}\n'),
    (
        b'{"execute":"guest-no-such-command"}\n',
        b'{"error": {"class": "CommandNotFound", "desc": "The command guest-no-such-command has not been found"}}\n',
    ),
    (b'{"execute":"guest-ping","id":"abc-1"}\n', b'{"return": {}, "id": "abc-1"}\n'),
    (
        b'{"execute":"guest-ping"}{"execute":"guest-sync","arguments":{"id":3}}{"execute":"guest-ping"}\n',
        b'{"return": {}}\n{"return": 3}\n{"return": {}}\n',
    ),
    (
        b"this is not json\n",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'this\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'is\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'not\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'json\'"}}\n',
    ),
    (
        b"\xff",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'{"execute":\xff"guest-ping"}\n',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'{"execute":"guest-ping"}\xff{"execute":"guest-ping"}',
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"return": {}}\n',
    ),
    (
        b"[1,2]\n",
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (b"42\n", b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n'),
    (b'{"execute":"guest-ping","arguments":{}}', b'{"return": {}}\n'),
    (
        b'{"x":1}\n',
        b'{"error": {"class": "GenericError", "desc": "QMP input member \'x\' is unexpected"}}\n',
    ),
    (
        b'{"execute":1}\n',
        b'{"error": {"class": "GenericError", "desc": "QMP input member \'execute\' must be a string"}}\n',
    ),
    (
        b'{"execute":"guest-ping", "id": 5, "extra":1}\n',
        b'{"id": 5, "error": {"class": "GenericError", "desc": "QMP input member \'extra\' is unexpected"}}\n',
    ),
    (b'{"execute":"guest-sync","arguments":{"id":7}}\n', b'{"return": 7}\n'),
    (b'{"execute":"guest-sync-delimited","arguments":{"id":8}}\n', b'\xff{"return": 8}\n'),
    (
        b'{"execute":"guest-sync-delimited"}\n',
        b'{"error": {"class": "GenericError", "desc": "Parameter \'id\' is missing"}}\n',
    ),
    (
        b'{"execute":"guest-file-open","arguments":{"path":"/nonexist"}}\n',
        b'{"error": {"class": "GenericError", "desc": "failed to open file \'/nonexist\' (mode: \'r\'): No such file or directory"}}\n',
    ),
    (
        b'{"execute":"guest-file-read","arguments":{"handle":999}}\n',
        b'{"error": {"class": "GenericError", "desc": "handle \'999\' has not been found"}}\n',
    ),
    (
        b'{"execute":"guest-file-close","arguments":{"handle":999}}\n',
        b'{"error": {"class": "GenericError", "desc": "handle \'999\' has not been found"}}\n',
    ),
    (
        b'{"execute":"guest-exec","arguments":{"path":"/nonexist"}}\n',
        b'{"error": {"class": "GenericError", "desc": "Guest agent command failed, error was \'Failed to execute child process \\u201C/nonexist\\u201D (No such file or directory)\'"}}\n',
    ),
    (
        b'{"execute":"guest-exec-status","arguments":{"pid":1}}\n',
        b'{"error": {"class": "GenericError", "desc": "Invalid parameter \'pid\'"}}\n',
    ),
    (
        b'{"execute":"guest-exec","arguments":{"path":"nosuchprog","capture-output":true}}\n',
        b'{"error": {"class": "GenericError", "desc": "Guest agent command failed, error was \'Failed to execute child process \\u201Cnosuchprog\\u201D (No such file or directory)\'"}}\n',
    ),
    (
        b'{"execute":"guest-file-open","arguments":{"path":"/etc/hostname","mode":"zz"}}',
        b'{"error": {"class": "GenericError", "desc": "invalid file open mode \'zz\'"}}\n',
    ),
    (
        b'{"execute":"guest-ping","arguments":{"a":1}}{"execute":"guest-ping","arguments":[]}{"execute":"guest-sync","arguments":{"id":"x"}}{"execute":"guest-sync","arguments":{"id":-5}}{"execute":"guest-sync","arguments":{"id":1.5}}',
        b'{"error": {"class": "GenericError", "desc": "Parameter \'a\' is unexpected"}}\n{"error": {"class": "GenericError", "desc": "QMP input member \'arguments\' must be an object"}}\n{"error": {"class": "GenericError", "desc": "Invalid parameter type for \'id\', expected: integer"}}\n{"return": -5}\n{"error": {"class": "GenericError", "desc": "Invalid parameter type for \'id\', expected: integer"}}\n',
    ),
    (
        b'{"execute":"guest-ping"}  \n\n\t  {"execute":"guest-ping"}',
        b'{"return": {}}\n{"return": {}}\n',
    ),
    (
        b'{"execute":"guest-ping", "execute":"guest-info"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}\n',
    ),
    (
        b'{"execute":"guest-ping", "id":{"a":[1,"\xc3\xa9\x7f",null]}}',
        b'{"return": {}, "id": {"a": [1, "\\u00E9\\u007F", null]}}\n',
    ),
    (
        b'{"execute":"guest-ping", "id":"\xc3("}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n',
    ),
    (
        b'{"execute":"guest-ping", "id":"\\u00e9\\ud83d\\ude00"}',
        b'{"return": {}, "id": "\\u00E9\\uD83D\\uDE00"}\n',
    ),
    (b'{"execute":"guest-ping", "id":1e400}', b'{"return": {}, "id": inf}\n'),
    (
        b'{"execute":"guest-ping", "id":1.5e3}{"execute":"guest-ping", "id":123456789012345678901234567890}{"execute":"guest-ping", "id":true}',
        b'{"return": {}, "id": 1500}\n{"return": {}, "id": 1.2345678901234568e+29}\n{"return": {}, "id": true}\n',
    ),
    (
        b'}\n]\n{"execute" "x"}\n{,}\n',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, missing : in object pair"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b"nulls true false null\n",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nulls\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b"\"abc\"\n'single'\n",
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (b'{"execute":"guest-ping"', b""),
    (b"}", b'{"return": {}}\n'),
    (
        b'{"execute":"guest-ping"\xff}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'@#{"execute":"guest-ping"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n{"return": {}}\n',
    ),
    (
        b'\x01{"execute":"guest-ping"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n{"return": {}}\n',
    ),
    (
        b'{"execute":"guest-ping"}\x00{"execute":"guest-ping"}',
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n{"return": {}}\n',
    ),
    (
        b'{"execute":"guest-ping"}\xfe{"execute":"guest-ping"}',
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"return": {}}\n',
    ),
    (
        b'{"execute":"guest-get-host-name","arguments":{"x":1}}',
        b'{"error": {"class": "GenericError", "desc": "Parameter \'x\' is unexpected"}}\n',
    ),
    (
        b"1\xff",
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (b"1a", b""),
    (b"01", b""),
    (b"-x", b""),
    (b"1.e5", b""),
    (
        b'"a\x01b"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n',
    ),
    (
        b'{"a":1}}',
        b'{"error": {"class": "GenericError", "desc": "QMP input member \'a\' is unexpected"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (b"[}", b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n'),
    (b"%d", b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'%\'"}}\n'),
    (b"ABC", b""),
    (b'"\\q"', b""),
    (
        b'{"execute":"guest-ping","id":"\\uFFFF"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\uFFFF is not a valid Unicode character"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\xef\xbf\xbf"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n',
    ),
    (b'{"execute":"guest-ping","id":"\\u0000"}', b'{"return": {}, "id": "\\u0000"}\n'),
    (
        b'{"execute":"guest-ping","id":"\\ud800"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\ud800 is not a valid Unicode character"}}\n',
    ),
    (
        b"{1:2}",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, key is not a string in object"}}\n',
    ),
    (
        b'{"a" 1}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, missing : in object pair"}}\n',
    ),
    (
        b'{"a":1 "b":2}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in dict"}}\n',
    ),
    (
        b"[1 2]",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in list"}}\n',
    ),
    (b'{"execute":"guest-ping","id":1e5}', b'{"return": {}, "id": 100000}\n'),
    (b'{"execute":"guest-ping","id":0.1}', b'{"return": {}, "id": 0.10000000000000001}\n'),
    (b'{"execute":"guest-ping","id":-0}', b'{"return": {}, "id": 0}\n'),
    (
        b'{"execute":"guest-ping","id":18446744073709551615}',
        b'{"return": {}, "id": 18446744073709551615}\n',
    ),
    (
        b'{"execute":"guest-ping","id":-9223372036854775809}',
        b'{"return": {}, "id": -9.2233720368547758e+18}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\x7f\x1f"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"\\u007F\\u001F\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'{"execute":"guest-ping","arguments":{"x":1},"id":null}',
        b'{"id": null, "error": {"class": "GenericError", "desc": "Parameter \'x\' is unexpected"}}\n',
    ),
    (
        b'{"id":1,"execute":"guest-ping","zz":2,"aa":3}',
        b'{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member \'aa\' is unexpected"}}\n',
    ),
    (
        b'{"exec-oob":"guest-ping"}',
        b'{"error": {"class": "GenericError", "desc": "QMP input member \'exec-oob\' is unexpected"}}\n',
    ),
    (
        b'{"execute":"guest-exec","arguments":{"path":"x","arg":[1]}}',
        b'{"error": {"class": "GenericError", "desc": "Invalid parameter type for \'arg[0]\', expected: string"}}\n',
    ),
    (
        b'{"execute":"guest-exec","arguments":{"arg":"x"}}',
        b'{"error": {"class": "GenericError", "desc": "Parameter \'path\' is missing"}}\n',
    ),
    (
        b'{"execute":"guest-file-read","arguments":{"count":"x","handle":"y"}}',
        b'{"error": {"class": "GenericError", "desc": "Invalid parameter type for \'handle\', expected: integer"}}\n',
    ),
    (
        b'{"execute":"guest-exec","arguments":{"path":"sh","capture-output":1}}',
        b'{"error": {"class": "GenericError", "desc": "Invalid parameter type for \'capture-output\', expected: boolean"}}\n',
    ),
    (
        b'{"execute":"guest-shutdown","arguments":{"mode":"bogus"}}',
        b'{"error": {"class": "GenericError", "desc": "mode is invalid (valid values are: halt|powerdown|reboot"}}\n',
    ),
    (
        b'{"id":1}',
        b'{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\\u12G4"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\u12G4 is not a valid Unicode character"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\\u12"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\u12\\" is not a valid Unicode character"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\\ud800\\u0041"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\ud800 is not a valid Unicode character"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\\ud800x"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\ud800 is not a valid Unicode character"}}\n',
    ),
    (b'{"execute":"guest-ping","id":"\xc0\x80"}', b'{"return": {}, "id": "\\u0000"}\n'),
    (
        b'{"execute":"guest-ping","id":"\xed\xa0\x80"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\xf4\x90\x80\x80"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\xe0\x80\xaf"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n',
    ),
    (b'{"execute":"guest-ping","id":\'x"y\'}', b'{"return": {}, "id": "x\\"y"}\n'),
    (b'{"execute":"guest-ping","id":"a\\/b\\\'c"}', b'{"return": {}, "id": "a/b\'c"}\n'),
    (b'{"execute":"guest-ping","id":[[[[[]]]]]}', b'{"return": {}, "id": [[[[[]]]]]}\n'),
    (
        b'{"execute":"guest-ping","id":-}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'-}\'"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":1.}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'1.}\'"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":1e}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'1e}\'"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":1e+}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'1e+}\'"}}\n',
    ),
    (b'{"execute":"guest-ping","id":-0.5e-3}', b'{"return": {}, "id": -0.00050000000000000001}\n'),
    (
        b'{"execute":"guest-ping","id":truex}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'truex\'"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\\t\\n\\r\\b\\f\\"\\\\"}',
        b'{"return": {}, "id": "\\t\\n\\r\\b\\f\\"\\\\"}\n',
    ),
    (
        b'{"execute":"guest-ping","id":{"b":1,"a":2,"c":{"z":1,"y":2}}}',
        b'{"return": {}, "id": {"a": 2, "b": 1, "c": {"y": 2, "z": 1}}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":"\xf0\x9f\x98\x80"}',
        b'{"return": {}, "id": "\\uD83D\\uDE00"}\n',
    ),
    (b'\r\n{"execute":"guest-ping"}', b'{"return": {}}\n'),
    (
        b'{"execute":"guest-ping","id":"\xef\xb7\x90"}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n',
    ),
    (
        b'{"execute":"guest-ping","arguments":{"a":1},"extra":2}',
        b'{"error": {"class": "GenericError", "desc": "QMP input member \'extra\' is unexpected"}}\n',
    ),
    (
        b'{"arguments":5,"execute":3}',
        b'{"error": {"class": "GenericError", "desc": "QMP input member \'execute\' must be a string"}}\n',
    ),
    (
        b'{"execute":"guest-set-time","arguments":{"time":"x"}}',
        b'{"error": {"class": "GenericError", "desc": "Invalid parameter type for \'time\', expected: integer"}}\n',
    ),
    (b'{"execute":"guest-fsfreeze-status"}', b'{"return": "thawed"}\n'),
    (
        b"abc':",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'abc\'"}}\n',
    ),
    (
        b"\n'q''\x00@",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\':\\n\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n',
    ),
    (
        b"null\"guest-nope\" 'q'}null\xfe-'\\{",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'\x00"x"{"execute":"guest-ping","id":"arguments"01 0}}}"a\x02""\xc3("',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'01\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"a\\u0002\'"}}\n',
    ),
    (b"null", b""),
    (
        b'"guest-nope"\xfe{"execute":"guest-ping","id":}"\xc3\xa9""arguments"\'\x00\'q\'"\\ud800""arguments"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'\'"}}\n',
    ),
    (
        b'"arguments"{"execute":"guest-ping"}"arguments"\'\x011',
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'\\u0001\'"}}\n',
    ),
    (
        b"\xff",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'"a\x02" "guest-sync"%{"execute":"guest-ping","id":1\n"1.5',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0002\'"}}\n',
    ),
    (
        b'\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}"\\u00e9"\xfe"\\u00e9"A"guest-sync-delimited"-2101\'q\'"\\u00e9"nul',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"1.5\\uFFFD\'"}}\n\xff{"return": 9}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'[@"id""nul\xffA"guest-sync"true"\\ud800"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'\\{"execute":"guest-ping"}"true,\x00A"\\u00e9" \\"guest-ping""\xc3\xa9"',
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"true,\'"}}\n',
    ),
    (
        b'true\'q\'{"execute":"guest-ping","id":}@[-2',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n',
    ),
    (
        b'"\\x"0101nul"a\x02""guest-ping""guest-ping""\\u00e9""arguments"{\\"guest-sync-delimited"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'01\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0002\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\\\\'"}}\n',
    ),
    (
        b'"\\ud800""arguments"nul"\\u00e9"1e3abc1e3\x01"x"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n',
    ),
    (
        b'"\\ud800"-{"execute":"guest-ping","id":{null""\\u00e9"\t"\xc3\xa9"\\"\\ud800"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\\\\'"}}\n',
    ),
    (
        b"\xfe]@true",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n',
    ),
    (
        b'"\\ud800""guest-sync-delimited""\\u00e9"\xff\'q\'1e3\xff1e3{"\xc3("',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'"\\x""\\x"1.5\x01-}"arguments"%"guest-sync"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'%\'"}}\n',
    ),
    (
        b'01"guest-sync","\\ud800"{"id":1}[{"execute":"guest-ping"}:,',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\ud800 is not a valid Unicode character"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n',
    ),
    (b"\x00", b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n'),
    (b"'", b""),
    (
        b'"id""x"\n"\\x""guest-sync"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid escape sequence in string"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'1:"guest-ping""guest-ping"{"id":1}"\xc3\xa9"',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'A"x""a\x02"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'A\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0002\'"}}\n',
    ),
    (
        b'1\x01{"execute":"guest-sync","arguments":{"id":5}}0\'q\'@\n}-2null1.5\xff',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n{"return": 5}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'{"id":1} {"id":1}{"execute":"guest-ping","id":',
        b'{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n',
    ),
    (
        b'"guest-nope"-\xfe}"arguments"}nul"execute"[',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'-\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nul\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'"guest-ping"\x00\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}"\\u00e9"{"execute":"guest-ping"}\xfe"\xc3(""arguments"%{"execute":"guest-sync","arguments":{"id":5}}"\xc3\xa9"\x00',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 9}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"return": 5}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n',
    ),
    (
        b'"\xc3\xa9""a\x02"}nul',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0002\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'abc0A%\xfe]"-2\t"guest-nope"]',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nulabc\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'A\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"-2\\t\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'::-2-2"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'\xffabc{"id":1}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"\\uFFFD\'"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n',
    ),
    (b'{"\\ud800"[', b""),
    (
        b'"guest-nope"abc\x01"guest-ping"\\\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}"\\x""\\u00e9"[null',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 9}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid escape sequence in string"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (b'1e3 "guest-nope"abc', b""),
    (
        b"\xfe01\"guest-sync-delimited\"'q' Anull1\"\\u00e9\"'q'}",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'"\\x"nul1}"guest-ping""guest-sync-delimited"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid escape sequence in string"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nul\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'abc\t1.5\xfe"guest-nope""x"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'abc\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b' null"\\ud800"1e3{"execute":"guest-ping"}"\xc3("\'q\'\\"\xc3(""id":',
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\\\\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (b'[,\t"guest-ping""guest-ping""\xc3(""guest-nope""x"\'1.5-"\\u00e9"', b""),
    (
        b"true1.51.5\n1",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'1.5-\\"\\\\u00e9\\"true1.51.5\\n\'"}}\n',
    ),
    (
        b'-\\\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}\'q\'',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 9}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'01"\\ud800"\\',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'01\'"}}\n',
    ),
    (b"0[", b""),
    (b':null"execute"\t1.5\n"\\x"', b""),
    (b'null:abc"\\ud800""arguments"abc,"x"true1', b""),
    (
        b'"\xc3("\n\x01"x" [1{"\\x"A',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'A\'"}}\n',
    ),
    (b",", b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n'),
    (
        b'\n["guest-sync-delimited""id"01\xff"guest-ping"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'01\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n',
    ),
    (
        b'\x00"guest-ping"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n',
    ),
    (
        b'"id""guest-ping"" \xfenull"\xc3("1"\\ud800"{"id":1}\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 9}\n',
    ),
    (
        b'0 "guest-nope""a\x02"0[}{',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"a\\u0002\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'{"execute":"guest-ping","id":-0\x00nul',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n',
    ),
    (
        b"nul::0-\x01",
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'-\\u0001\'"}}\n',
    ),
    (
        b'{"id":1}"guest-nope"',
        b'{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'\\"\xc3("{"execute":"guest-sync","arguments":{"id":5}}@A1e3{"id":1}"guest-sync""\xc3(""guest-nope"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\\\\'"}}\n{"return": 5}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'"guest-sync-delimited""id"true,"x"',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (b"'\x00", b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'\'"}}\n'),
    (
        b'"a\x02"abc',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0002\'"}}\n',
    ),
    (
        b'1.5"arguments"null-2[0"guest-sync"001-2"id"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'00\'"}}\n',
    ),
    (
        b' "\xc3(""\\x"01-,',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'"arguments"}"id"nul',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'"x""\\ud800"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nul\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, \\\\ud800 is not a valid Unicode character"}}\n',
    ),
    (b'{"execute":"guest-ping","id"::', b""),
    (b"%", b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'%\'"}}\n'),
    (b"1", b""),
    (b'\'q\'@"execute" "\\u00e9"\\', b""),
    (
        b':"\\u00e9"A"guest-sync""guest-sync"\\',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'A\'"}}\n',
    ),
    (b'"execute"0-2', b""),
    (
        b'\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}"\\u00e9"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 9}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'1\t"guest-nope""execute""\xc3("{"execute":"guest-ping","id":[\\0"\\x"',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\\\\'"}}\n',
    ),
    (
        b'"\\ud800""{"execute":"guest-sync","arguments":{"id":5}}"guest-nope""guest-sync"-2\xfe"\xc3(""guest-ping"]\xff{"execute":"guest-sync-delimited","arguments":{"id":9}}',
        b'{"return": 5}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n\xff{"return": 9}\n',
    ),
    (
        b'"id"{"id":1}\\:{"execute":"guest-ping"}\x00\xfe"\\ud800"{"id":1}"\xc3("\x00',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\\\\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\n{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n',
    ),
    (
        b'\x01{nul1.5"guest-ping"{"id":1}\'q\'}"a\x02"',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\u0001\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nul\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"a\\u0002\'"}}\n',
    ),
    (
        b'abc}]{"execute":"guest-sync","arguments":{"id":5}}1e301\t',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n{"return": 5}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'\t\t{"id":1}"x"nulabcnul"guest-sync""\\x",',
        b'{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member \'execute\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'nulabcnul\'"}}\n{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, invalid escape sequence in string"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\n',
    ),
    (
        b'\'q\'{"guest-sync""\xc3\xa9"',
        b'{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}\n',
    ),
    (
        b'"\\u00e9""a\x02"\x00{"execute":"guest-ping"}%{"execute":"guest-ping","id":',
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"a\\u0002\'"}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\'"}}\n{"return": {}}\n{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'%\'"}}\n',
    ),
    (b'"id"0\'q\'{"execute":"guest-ping"}', b""),
]
