// Running code that is not in the package as plain source: decoded or
// downloaded payloads, dropped executables, download cradles, reverse shells.
//
// Conventions of this rule set: `weight` (1..10) is the rule's contribution to
// a package score; `filetype` lists the file-name suffixes a match counts for
// (no filetype = every file). Text features only, no modules.

rule exec_decoded_payload {
    meta:
        description = "exec/eval of a base64, base32, base85, hex or rot13 decoded string"
        author = "dragonfly-client"
        weight = 8
        filetype = ".py .pyw .pth"
    strings:
        $direct = /\b(exec|eval)\s*\(\s*(compile\s*\(\s*)?(__import__\(\s*['"](base64|binascii|codecs)['"]\s*\)\s*\.\s*|[A-Za-z_][A-Za-z0-9_.]{0,40}\.)?(b64decode|b32decode|b16decode|b85decode|a85decode|urlsafe_b64decode|decodebytes|unhexlify|fromhex)\s*\(/
        $rot13 = /['"]rot_?13['"]/
        $codecs = "codecs.decode"
        $exec_any = /\b(exec|eval)\s*\(/
    condition:
        $direct or ($rot13 and $codecs and $exec_any)
}

rule exec_decompressed_payload {
    meta:
        description = "exec/eval of zlib/lzma/bz2/gzip-decompressed data or of marshalled bytecode"
        author = "dragonfly-client"
        weight = 8
        filetype = ".py .pyw .pth"
    strings:
        $direct = /\b(exec|eval)\s*\(\s*(compile\s*\(\s*)?(__import__\(\s*['"])?(zlib|lzma|bz2|gzip|marshal)(['"]\s*\))?\s*\.\s*(decompress|loads)\s*\(/
    condition:
        $direct
}

rule dunder_import_exec {
    meta:
        description = "inline __import__ of os/subprocess/pty/socket used to run commands, a common one-liner obfuscation"
        author = "dragonfly-client"
        weight = 7
        filetype = ".py .pyw .pth"
    strings:
        $call = /__import__\(\s*['"](os|subprocess|pty|socket|ctypes)['"]\s*\)\s*\.\s*(system|popen|Popen|call|run|check_output|getoutput|spawn|startfile|CDLL|windll)\b/
        $getattr = /getattr\s*\(\s*__import__\(\s*['"](os|subprocess|pty)['"]\s*\)\s*,\s*['"](system|popen|Popen|call|run|spawn|startfile)['"]/
    condition:
        any of them
}

rule exec_remote_code {
    meta:
        description = "executes code fetched over HTTP"
        author = "dragonfly-client"
        weight = 9
        filetype = ".py .pyw .pth"
    strings:
        $direct = /\b(exec|eval)\s*\(\s*(compile\s*\(\s*)?[^\n]{0,40}(urlopen|requests\.get|requests\.post|httpx\.get|urllib2\.urlopen)\s*\(/
        $fetch_var = /\n[ \t]*[A-Za-z_][A-Za-z0-9_]*\s*=\s*[^\n]{0,40}(urlopen|requests\.get|httpx\.get)\s*\([^\n]{0,200}(\.read\(\)|\.text\b|\.content\b)/
        $exec_var = /\bexec\s*\(\s*[A-Za-z_][A-Za-z0-9_]*(\.decode\([^)\n]{0,20}\))?\s*(,[^\n)]{0,60})?\)/
    condition:
        $direct or ($fetch_var and $exec_var)
}

rule download_and_run_binary {
    meta:
        description = "downloads an executable or script into a temporary or profile directory and starts it"
        author = "dragonfly-client"
        weight = 8
        filetype = ".py .pyw .pth"
    strings:
        $fetch = /\b(urlopen|urlretrieve|requests\.get|httpx\.get|wget\.download|DownloadFile)\s*\(/
        $tmp = /\b(tempfile\.(gettempdir|mkdtemp|mkstemp|NamedTemporaryFile)|getenv\s*\(\s*['"](TEMP|TMP|APPDATA|LOCALAPPDATA)['"]|environ\s*(\[|\.get\s*\()\s*['"](TEMP|TMP|APPDATA|LOCALAPPDATA)['"])|['"]\/tmp\/|%(TEMP|APPDATA)%/
        $exe = /\.(exe|scr|bat|cmd|vbs|ps1|msi)['"]/
        $run = /\b(os\.startfile|subprocess\.(Popen|call|run|check_call)|os\.system|ShellExecute[A-Za-z]{0,2})\s*\(/
    condition:
        $fetch and $tmp and $exe and $run
}

rule shell_pipe_download {
    meta:
        description = "Python code that shells out to curl/wget and pipes the download into a shell or interpreter"
        author = "dragonfly-client"
        weight = 6
        filetype = ".py .pyw .pth"
    strings:
        $pipe = /\b(curl|wget)\s[^\n|;&]{0,200}\|\s*(sudo\s+)?((ba|z|da|k)?sh|python[23]?)\b/
        $chmod = /\b(curl|wget)\s[^\n]{0,200}&&\s*chmod\s+(\+x|[0-7]{3,4})\s[^\n]{0,200}&&/
    condition:
        any of them
}

rule windows_download_cradle {
    meta:
        description = "hidden or encoded PowerShell, or a LOLBin (certutil, bitsadmin, mshta, regsvr32) fetching a payload"
        author = "dragonfly-client"
        weight = 8
        filetype = ".py .pyw .pth .bat .cmd .ps1 .vbs .hta"
    strings:
        $ps_enc = /powershell(\.exe)?(\s[^\n]{0,120})?\s-(e|ec|enc|encodedcommand)\s+['"]?[A-Za-z0-9+\/]{20,}/ nocase
        $ps_hidden = /powershell(\.exe)?(\s[^\n]{0,120})?\s-w(indowstyle)?\s+hidden/ nocase
        // IEX(New-Object Net.WebClient).DownloadString(...), iex (iwr ...), iwr ... | iex
        $iex1 = /\b(iex|invoke-expression)\s*\(\s*(\(\s*)?(new-object\s+(system\.)?net\.webclient\s*\)\s*\.\s*download(string|data)|iwr|irm|invoke-webrequest|invoke-restmethod)\b/ nocase
        $iex2 = /\b(iwr|irm|invoke-webrequest|invoke-restmethod|downloadstring\s*\([^\n)]{0,200}\))[^\n|]{0,200}\|\s*(iex|invoke-expression)\b/ nocase
        $certutil = /certutil(\.exe)?\s[^\n]{0,60}-urlcache\b/ nocase
        $bitsadmin = /bitsadmin(\.exe)?\s[^\n]{0,60}\/transfer\b/ nocase
        $mshta = /mshta(\.exe)?\s+['"]?https?:/ nocase
        $regsvr = /regsvr32(\.exe)?\s[^\n]{0,60}\/i:https?:/ nocase
    condition:
        any of them
}

rule reverse_shell_socket_dup2 {
    meta:
        description = "connects a socket and wires it to a shell's stdio (dup2 or Popen with the socket's fileno)"
        author = "dragonfly-client"
        weight = 10
        filetype = ".py .pyw .pth"
    strings:
        $connect = /\.connect\s*\(\s*\(/
        $dup2 = /\bdup2\s*\(\s*[A-Za-z_][A-Za-z0-9_.]*\.fileno\s*\(\s*\)\s*,\s*[012]\s*\)/
        $popen_sock = /stdin\s*=\s*[A-Za-z_][A-Za-z0-9_.]*\.fileno\s*\(\s*\)\s*,\s*stdout\s*=\s*[A-Za-z_][A-Za-z0-9_.]*\.fileno\s*\(\s*\)/
        $shell = /['"]\/bin\/(ba|z|da)?sh['"]|['"](cmd|cmd\.exe|powershell|powershell\.exe)['"]|pty\.spawn\s*\(/
    condition:
        $connect and $shell and (#dup2 >= 2 or $popen_sock)
}

rule reverse_shell_oneliner {
    meta:
        description = "a classic reverse-shell one-liner (bash /dev/tcp, nc -e, mkfifo pipe, python socket one-liner)"
        author = "dragonfly-client"
        weight = 9
        filetype = ".py .pyw .pth .sh .bash .bat .cmd .ps1"
    strings:
        $bash_tcp = /\b(ba)?sh\s+-i\s[^\n]{0,10}>&\s*\/dev\/tcp\/[^\s\/]{1,100}\/[0-9]{1,5}/
        $dev_tcp_ip = /\/dev\/tcp\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\/[0-9]{1,5}/
        $nc_exec = /\b(nc|ncat|netcat)(\.exe)?\s[^\n]{0,40}-e\s+(\/bin\/(ba)?sh|cmd(\.exe)?|powershell)\b/
        $mkfifo = /mkfifo\s+\/tmp\/[^\n]{0,80}\|\s*(nc|ncat|netcat)\s/
        $py_oneliner = /import\s+socket\s*,\s*subprocess\s*,\s*os\s*;/
    condition:
        any of them
}
