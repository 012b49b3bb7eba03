// Where stolen data goes and where payloads come from: chat webhooks and bot
// APIs, paste sites, file drops and tunnels, IP lookups that fingerprint the
// victim, and downloads from bare public IP addresses.
//
// Conventions of this rule set: `weight` (1..10) is the rule's contribution to
// a package score; `filetype` lists the file-name suffixes a match counts for
// (no filetype = every file). Text features only, no modules.

rule discord_webhook_url {
    meta:
        description = "a complete Discord webhook URL (id and token), the most common exfiltration channel of PyPI stealers"
        author = "dragonfly-client"
        weight = 6
    strings:
        $hook = /discord(app)?\.com\/api\/(v[0-9]{1,2}\/)?webhooks\/[0-9]{15,20}\/[A-Za-z0-9_\-]{40,}/
    condition:
        $hook
}

rule telegram_bot_token_url {
    meta:
        description = "a Telegram Bot API URL with an embedded bot token"
        author = "dragonfly-client"
        weight = 6
    strings:
        $url = /api\.telegram\.org\/bot[0-9]{8,10}:[A-Za-z0-9_\-]{35}/
        // The example token from Telegram's own documentation.
        $doc_example = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    condition:
        #url > #doc_example
}

rule paste_or_tunnel_endpoint {
    meta:
        description = "raw paste sites, anonymous file drops, tunnels and request catchers used to stage payloads or receive data"
        author = "dragonfly-client"
        weight = 3
        filetype = ".py .pyw .pth .sh .bat .cmd .ps1"
    strings:
        $paste = /\b(pastebin\.com\/raw|paste\.ee\/r\/|hastebin\.com\/raw|rentry\.co\/[A-Za-z0-9_\-]{3,}\/raw|ghostbin\.[a-z]{2,3}\/[A-Za-z0-9_\-]{3,})/
        $drop = /\b(transfer\.sh\/|file\.io\/|gofile\.io\/|anonfiles\.com\/|bashupload\.com|temp\.sh\/)/
        $tunnel = /\b(ngrok\.io|ngrok-free\.app|ngrok\.app|trycloudflare\.com|serveo\.net|loca\.lt)\b/
        $catcher = /\b(webhook\.site\/|pipedream\.net|requestbin\.net|interact\.sh|burpcollaborator\.net|oast\.(fun|pro|live|site|online|me))\b/
    condition:
        any of them
}

rule victim_fingerprinting_ip_lookup {
    meta:
        description = "looks up the public IP address, collects user and host names and sends them out"
        author = "dragonfly-client"
        weight = 4
        filetype = ".py .pyw .pth"
    strings:
        $ip = /\b(api\.ipify\.org|ipinfo\.io|ip-api\.com|checkip\.amazonaws\.com|ifconfig\.me|icanhazip\.com|ipapi\.co|myexternalip\.com|geolocation-db\.com|wtfismyip\.com)/
        $host1 = /\b(getpass\.getuser|os\.getlogin|platform\.node|socket\.gethostname|platform\.uname)\s*\(/
        $host2 = /environ\s*(\[|\.get\s*\()\s*['"](USERNAME|COMPUTERNAME|USER)['"]/
        $send = /\b(requests\.post|httpx\.post|urlopen|sendMessage|sendDocument|smtplib\.SMTP)\b|\/api\/webhooks\//
    condition:
        $ip and ($host1 or $host2) and $send
}

rule hardcoded_ip_fetch {
    meta:
        description = "downloads from an http(s) URL on a bare public IPv4 address"
        author = "dragonfly-client"
        weight = 3
        filetype = ".py .pyw .pth .sh .bat .cmd .ps1"
    strings:
        $any = /https?:\/\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}[:\/]/
        // Loopback, private, link-local, unspecified and documentation ranges.
        $local = /https?:\/\/((127|10|0)\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|192\.168\.[0-9]{1,3}\.[0-9]{1,3}|172\.(1[6-9]|2[0-9]|3[01])\.[0-9]{1,3}\.[0-9]{1,3}|169\.254\.[0-9]{1,3}\.[0-9]{1,3}|192\.0\.2\.[0-9]{1,3}|198\.51\.100\.[0-9]{1,3}|203\.0\.113\.[0-9]{1,3})[:\/]/
        $fetch = /\b(urlopen|urlretrieve|requests\.get|httpx\.get|wget|curl|Invoke-WebRequest|DownloadFile|DownloadString)\b/
    condition:
        #any > #local and $fetch
}
