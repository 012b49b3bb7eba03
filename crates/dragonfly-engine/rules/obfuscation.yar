// Hiding what code does: large encoded literals, escape and chr() chains,
// obfuscator markers, lookalike identifiers, dynamic lookups of exec,
// encoded or disguised executables, and sandbox/analysis-tool checks.
//
// Conventions of this rule set: `weight` (1..10) is the rule's contribution to
// a package score; `filetype` lists the file-name suffixes a match counts for
// (no filetype = every file). Text features only, no modules.

rule base64_decode_large_literal {
    meta:
        description = "decodes a large inline base64/base85 literal that is not an image"
        author = "dragonfly-client"
        weight = 4
        filetype = ".py .pyw .pth"
    strings:
        $blob = /\b(b64decode|b32decode|b85decode|a85decode|urlsafe_b64decode|decodebytes)\s*\(\s*b?['"][A-Za-z0-9+\/=_\-]{400}/
        // PNG, GIF, JPEG, ICO, SVG and RIFF data encoded as base64.
        $image = /\b(b64decode|b32decode|b85decode|a85decode|urlsafe_b64decode|decodebytes)\s*\(\s*b?['"](iVBORw0KGgo|R0lGOD|\/9j\/|AAABAA|PHN2Zy|PD94bWw|UklGR)/
    condition:
        #blob > #image
}

rule hex_escape_payload_exec {
    meta:
        description = "a long run of \\xNN escapes in a file that also calls exec/eval"
        author = "dragonfly-client"
        weight = 5
        filetype = ".py .pyw .pth"
    strings:
        $hex = /['"](\\x[0-9a-fA-F]{2}){60}/
        $exec = /\b(exec|eval)\s*\(/
    condition:
        $hex and $exec
}

rule chr_concatenation_chain {
    meta:
        description = "strings assembled from chains of chr() calls or joined code-point lists"
        author = "dragonfly-client"
        weight = 4
        filetype = ".py .pyw .pth"
    strings:
        $plus = /chr\(\s*[0-9]{2,3}\s*\)\s*\+\s*chr\(\s*[0-9]{2,3}\s*\)\s*\+\s*chr\(\s*[0-9]{2,3}\s*\)\s*\+\s*chr\(\s*[0-9]{2,3}\s*\)\s*\+\s*chr\(\s*[0-9]{2,3}\s*\)/
        $join = /['"]['"]\.join\s*\(\s*(map\s*\(\s*chr\s*,\s*\[|\[?\s*chr\s*\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*for\s+[A-Za-z_][A-Za-z0-9_]*\s+in\s*\[)\s*[0-9]{2,3}\s*,\s*[0-9]{2,3}\s*,\s*[0-9]{2,3}\s*,\s*[0-9]{2,3}\s*,/
        $use = /\b(exec|eval|__import__|getattr|system|Popen)\s*\(/
    condition:
        ($plus or $join) and $use
}

rule obfuscator_tool_marker {
    meta:
        description = "output of a Python obfuscator or packer (PyArmor runtime, pyobfuscate-style names)"
        author = "dragonfly-client"
        weight = 3
        filetype = ".py .pyw .pth"
    strings:
        $pyarmor1 = "__pyarmor__("
        $pyarmor2 = /from\s+pytransform\s+import\s+pyarmor_runtime/
        $pyarmor3 = /\bpyarmor_runtime_[0-9]{6}\b/
        $pyarmor4 = "__pyarmor_enter_"
        $tool1 = /#\s*(obfuscated|encrypted|protected)\s+(with|by|using)\s+(pyobfuscate|pyobfuscator|hyperion|blankobf|kramer|specter|pyarmor|development-tools)/ nocase
        $tool2 = /__obfuscator__\s*=/
        // Identifiers made only of I and l, as several obfuscators emit.
        $il_name = /\b[Il]{12,}\s*=/
    condition:
        any of ($pyarmor*) or any of ($tool*) or #il_name >= 8
}

rule unicode_lookalike_identifiers {
    meta:
        description = "several calls through identifiers written with mathematical or fullwidth letters (NFKC-normalised by Python, invisible to naive greps)"
        author = "dragonfly-client"
        weight = 6
        filetype = ".py .pyw .pth"
    strings:
        // U+1D400..U+1D7FF mathematical alphanumerics inside an identifier followed by '('.
        $math = /([A-Za-z_]\xF0\x9D[\x90-\x9F][\x80-\xBF]|\xF0\x9D[\x90-\x9F][\x80-\xBF]([A-Za-z0-9_]|\xF0\x9D[\x90-\x9F][\x80-\xBF]))([A-Za-z0-9_]|\xF0\x9D[\x90-\x9F][\x80-\xBF]){0,15}[ \t]*\(/
        // U+FF21..U+FF3A and U+FF41..U+FF5A fullwidth letters, same shape.
        $fullwidth = /([A-Za-z_](\xEF\xBC[\xA1-\xBA]|\xEF\xBD[\x81-\x9A])|(\xEF\xBC[\xA1-\xBA]|\xEF\xBD[\x81-\x9A])([A-Za-z0-9_]|\xEF\xBC[\xA1-\xBA]|\xEF\xBD[\x81-\x9A]))([A-Za-z0-9_]|\xEF\xBC[\xA1-\xBA]|\xEF\xBD[\x81-\x9A]){0,15}[ \t]*\(/
    condition:
        #math + #fullwidth >= 3
}

rule dynamic_builtin_exec_lookup {
    meta:
        description = "looks up exec/eval dynamically (getattr on builtins, split names, the __builtins__ dict)"
        author = "dragonfly-client"
        weight = 6
        filetype = ".py .pyw .pth"
    strings:
        // Plain getattr(builtins, "exec") is common py2/py3 compatibility code; not matched.
        $getattr = /getattr\s*\(\s*(__builtins__|__import__\(\s*['"](builtins|__builtin__)['"]\s*\))\s*,\s*['"](exec|eval|compile|__import__)['"]/
        $split_exec = /['"]ex['"]\s*\+\s*['"]ec['"]|['"]e['"]\s*\+\s*['"]xec['"]|['"]exe['"]\s*\+\s*['"]c['"]/
        $split_eval = /['"]ev['"]\s*\+\s*['"]al['"]|['"]e['"]\s*\+\s*['"]val['"]|['"]eva['"]\s*\+\s*['"]l['"]/
        $builtins_dict = /(globals|vars|locals)\s*\(\s*\)\s*\[\s*['"]__builtins__['"]\s*\]/
        $builtins_item = /__builtins__(\.__dict__)?\s*\[\s*['"](exec|eval)['"]\s*\]/
    condition:
        any of them
}

rule embedded_encoded_executable {
    meta:
        description = "a base64- or hex-encoded PE or ELF header, i.e. an executable carried as text"
        author = "dragonfly-client"
        weight = 7
    strings:
        // MZ header (4D 5A 90 00 03 00 00 00 04 00 00 00) as base64 and as hex.
        $pe_b64 = "TVqQAAMAAAAEAAAA"
        $pe_hex = "4d5a90000300000004000000" nocase
        $pe_hex_esc = "\\x4d\\x5a\\x90\\x00\\x03\\x00" nocase
        // ELF64 little-endian header (7F 45 4C 46 02 01 01) as base64 and as hex.
        $elf_b64 = "f0VMRgIBAQ"
        $elf_hex = "7f454c46020101" nocase
        $dos_stub_b64 = "This program cannot be run in DOS mode" base64
    condition:
        any of them
}

rule executable_disguised_as_text {
    meta:
        description = "a PE, ELF or Mach-O executable named like source, text or data"
        author = "dragonfly-client"
        weight = 7
        filetype = ".py .pyw .pth .txt .json .cfg .toml .md .rst .csv .yaml .yml .ini .xml .html .js"
    condition:
        filesize > 64 and (
            (uint16(0) == 0x5A4D and uint32(uint32(0x3C)) == 0x00004550)
            or uint32(0) == 0x464C457F
            or uint32(0) == 0xFEEDFACF
            or uint32(0) == 0xFEEDFACE
        )
}

rule anti_analysis_checks {
    meta:
        description = "looks for virtual machines, sandboxes or analysis tools before acting"
        author = "dragonfly-client"
        weight = 5
        filetype = ".py .pyw .pth"
    strings:
        $vm1 = "VBoxService" nocase
        $vm2 = "VBoxTray" nocase
        $vm3 = "vmtoolsd" nocase
        $vm4 = "vmwaretray" nocase
        $vm5 = "vmwareuser" nocase
        $vm6 = "qemu-ga" nocase
        $vm7 = "SbieDll" nocase
        $tool1 = "wireshark" nocase
        $tool2 = "processhacker" nocase
        $tool3 = "x64dbg" nocase
        $tool4 = "ollydbg" nocase
        $tool5 = "httpdebuggerui" nocase
        $tool6 = "fiddler" nocase
        $tool7 = "ida64" nocase
        $tool8 = "procmon" nocase
        $user1 = "WDAGUtilityAccount"
        $api1 = "IsDebuggerPresent"
        $api2 = "CheckRemoteDebuggerPresent"
    condition:
        4 of them
}
