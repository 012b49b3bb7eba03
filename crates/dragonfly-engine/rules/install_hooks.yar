// Code that runs because a package was installed: setup.py at build or
// install time, .pth files and sitecustomize at every interpreter start, and
// persistence that survives a reboot (autostart keys, shell rc files, cron).
//
// Conventions of this rule set: `weight` (1..10) is the rule's contribution to
// a package score; `filetype` lists the file-name suffixes a match counts for
// (no filetype = every file). Text features only, no modules.

rule setup_py_module_level_exec {
    meta:
        description = "setup.py runs a shell command at module level, so whenever pip builds or installs the package"
        author = "dragonfly-client"
        weight = 5
        filetype = "setup.py"
    strings:
        // A call at column 0 is module level, not inside a function.
        $os_exec = /\n(os\.(system|popen|startfile)|__import__\(\s*['"]os['"]\s*\)\s*\.\s*(system|popen))\s*\(/
        // Module-level subprocess calls through a shell, or of a downloader or interpreter.
        $sp_shell = /\n([A-Za-z_][A-Za-z0-9_]{0,30}\s*=\s*)?subprocess\.(Popen|call|run|check_call|check_output)\s*\([^\n]{0,300}shell\s*=\s*True/
        $sp_tool = /\n([A-Za-z_][A-Za-z0-9_]{0,30}\s*=\s*)?subprocess\.(Popen|call|run|check_call|check_output)\s*\(\s*\[?\s*['"](powershell|cmd|curl|wget|bash|sh|mshta|certutil|start)\b/
    condition:
        any of them
}

rule setup_py_custom_command_payload {
    meta:
        description = "setup.py overrides an install/develop command and fetches or decodes something before running it"
        author = "dragonfly-client"
        weight = 5
        filetype = "setup.py"
    strings:
        $cmdclass = "cmdclass"
        $base = /class\s+[A-Za-z_][A-Za-z0-9_]*\s*\(\s*([A-Za-z_][A-Za-z0-9_.]*\.)?_?(install|develop|egg_info|bdist_egg|build_py)\s*\)\s*:/
        $net = /\b(urlopen|urlretrieve|requests\.(get|post)|httpx\.(get|post)|wget\.download|socket\.socket)\s*\(/
        $dec = /\b(b64decode|b32decode|b85decode|a85decode|unhexlify|fromhex|zlib\.decompress|marshal\.loads)\s*\(/
        $run = /\b(os\.(system|popen|startfile)|subprocess\.(Popen|call|run|check_call|check_output)|exec|eval)\s*\(/
    condition:
        $cmdclass and $base and ($net or $dec) and $run
}

rule setup_py_remote_fetch {
    meta:
        description = "setup.py downloads something and writes an executable or runs a process"
        author = "dragonfly-client"
        weight = 6
        filetype = "setup.py"
    strings:
        $fetch = /\b(urlopen|urlretrieve|requests\.(get|post)|httpx\.(get|post)|wget\.download)\s*\(/
        $exe = /\.(exe|scr|bat|cmd|vbs|ps1|msi|dll)['"]/
        $run = /\b(os\.(system|popen|startfile)|subprocess\.(Popen|call|run|check_call|check_output))\s*\(/
    condition:
        $fetch and ($exe or $run)
}

rule pth_file_code_execution {
    meta:
        description = "a .pth file whose import line executes decoded, downloaded or shell code at every interpreter start"
        author = "dragonfly-client"
        weight = 8
        filetype = ".pth"
    strings:
        $import_line = /(^|\n)import\s/
        $p_exec = /\b(exec|eval)\s*\(/
        $p_decode = /\b(b64decode|b85decode|unhexlify|fromhex|zlib\.decompress|marshal\.loads|codecs\.decode)\b/
        $p_run = /\b(subprocess|os\.system|os\.popen|urlopen|urllib\.request|socket\.socket)\b/
        $p_dunder = /__import__\(\s*['"](os|subprocess|base64|zlib|socket|urllib\.request|marshal)['"]/
    condition:
        $import_line and any of ($p_*)
}

rule sitecustomize_code_execution {
    meta:
        description = "a sitecustomize/usercustomize module (run at every interpreter start) that executes code or opens connections"
        author = "dragonfly-client"
        weight = 5
        filetype = "sitecustomize.py usercustomize.py"
    strings:
        $exec = /\b(exec|eval)\s*\(/
        $run = /\b(subprocess\.(Popen|call|run|check_call|check_output)|os\.(system|popen|startfile))\s*\(/
        $net = /\b(urlopen|urlretrieve|requests\.(get|post)|socket\.socket)\s*\(/
        $dec = /\b(b64decode|zlib\.decompress|marshal\.loads)\s*\(/
    condition:
        any of them
}

rule windows_autostart_persistence {
    meta:
        description = "writes a Run/RunOnce registry value or copies a file into the Startup folder"
        author = "dragonfly-client"
        weight = 6
        filetype = ".py .pyw .pth .bat .cmd .ps1 .vbs"
    strings:
        $run_key = /Software\\{1,2}Microsoft\\{1,2}Windows\\{1,2}CurrentVersion\\{1,2}Run(Once)?\b/ nocase
        $set_reg1 = "SetValueEx"
        $set_reg2 = /\breg(\.exe)?\s+add\s/ nocase
        $set_reg3 = /(New|Set)-ItemProperty/ nocase
        $startup1 = /Start Menu\\{1,2}Programs\\{1,2}Startup/ nocase
        $startup2 = /['"]Start Menu['"]\s*,\s*['"]Programs['"]\s*,\s*['"]Startup['"]/
        $startup3 = "shell:startup" nocase
        $copy = /\b(shutil\.(copy|copy2|copyfile|move)|os\.(rename|replace)|Copy-Item|open\s*\([^\n]{0,160}['"][wa]b?['"])/
    condition:
        ($run_key and any of ($set_reg*)) or (any of ($startup*) and $copy)
}

rule unix_shell_persistence {
    meta:
        description = "appends a downloader or shell to a shell rc file, or installs an @reboot crontab entry"
        author = "dragonfly-client"
        weight = 6
        filetype = ".py .pyw .pth .sh"
    strings:
        $rc = /['"\/]\.(bashrc|zshrc|bash_profile|profile)\b/
        $append_py = /open\s*\([^\n]{0,160}['"]a\+?['"]/
        $append_sh = />>\s*['"]?(~|\$HOME|\/root|\/home\/[^\/\s]+)\/\.(bashrc|zshrc|bash_profile|profile)\b/
        $payload = /\b(curl|wget|nohup|base64\s+-d|python3?\s+-c|nc\s+-e)\b|\/dev\/tcp\//
        $cron_reboot = "@reboot"
        $cron_pipe = /\|\s*crontab\s+-(\s|['"\)])/
    condition:
        ($rc and ($append_py or $append_sh) and $payload) or ($cron_reboot and $cron_pipe)
}
