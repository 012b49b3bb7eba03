// Theft of secrets: browser password stores and their master key, Discord
// tokens, SSH keys, cloud and registry credentials, the environment, and
// cryptocurrency wallets.
//
// Conventions of this rule set: `weight` (1..10) is the rule's contribution to
// a package score; `filetype` lists the file-name suffixes a match counts for
// (no filetype = every file). Text features only, no modules.

rule browser_credential_paths {
    meta:
        description = "reads the password database of several Chromium-based browsers"
        author = "dragonfly-client"
        weight = 7
        filetype = ".py .pyw .pth"
    strings:
        $login_data = "Login Data"
        $local_state = "Local State"
        $web_data = "Web Data"
        $cookies = /['"\\\/]Cookies['"]/
        $chrome = /Google[\\\/'", ]{1,6}Chrome/
        $brave = "BraveSoftware"
        $edge = /Microsoft[\\\/'", ]{1,6}Edge/
        $opera = "Opera Software"
        $yandex = /Yandex[\\\/'", ]{1,6}YandexBrowser/
        $vivaldi = /['"\\\/]Vivaldi[\\\/'"]/
        $chromium = /['"\\\/]Chromium[\\\/'"]/
    condition:
        $login_data and ($local_state or $web_data or $cookies)
        and 2 of ($chrome, $brave, $edge, $opera, $yandex, $vivaldi, $chromium)
}

rule browser_master_key_decrypt {
    meta:
        description = "decrypts the Chromium os_crypt master key with DPAPI and uses it with AES-GCM"
        author = "dragonfly-client"
        weight = 8
        filetype = ".py .pyw .pth"
    strings:
        $encrypted_key = "encrypted_key"
        $os_crypt = "os_crypt"
        $dpapi = /CryptUnprotectData|win32crypt|\bDPAPI\b/
        $aes_gcm = /AES\.new\s*\([^\n]{0,80}MODE_GCM|AESGCM\s*\(/
        $v10 = /\[\s*3\s*:\s*15\s*\]|['"]v1[01]['"]/
    condition:
        $encrypted_key and $os_crypt and $dpapi and ($aes_gcm or $v10)
}

rule discord_token_grabber {
    meta:
        description = "reads Discord's leveldb storage looking for (encrypted) user tokens"
        author = "dragonfly-client"
        weight = 9
        filetype = ".py .pyw .pth"
    strings:
        $leveldb = /Local Storage[\\\/'", ]{1,6}leveldb/
        $discord_dir = /['"\\\/](discord|discordcanary|discordptb|Discord)['"\\\/]/
        $enc_prefix = "dQw4w9WgXcQ:"
        $token_re = "[\\w-]{24}\\.[\\w-]{6}\\.[\\w-]{2"
        $mfa_re = "mfa\\.[\\w-]{84}"
    condition:
        $leveldb and $discord_dir and ($enc_prefix or $token_re or $mfa_re)
}

rule ssh_key_exfiltration {
    meta:
        description = "reads private SSH keys or known_hosts and sends data out over HTTP, mail or a chat API"
        author = "dragonfly-client"
        weight = 6
        filetype = ".py .pyw .pth"
    strings:
        $ssh = /\.ssh[\\\/'", ]{1,6}(id_rsa|id_ed25519|id_ecdsa|id_dsa|known_hosts)\b/
        $send = /\b(requests\.post|httpx\.post|urlopen|smtplib\.SMTP|ftplib\.FTP|sendDocument)\b|\/api\/webhooks\//
    condition:
        $ssh and $send
}

rule cloud_credential_harvest {
    meta:
        description = "collects several cloud, cluster, registry or VCS credential files"
        author = "dragonfly-client"
        weight = 7
        filetype = ".py .pyw .pth .sh"
    strings:
        $aws = /\.aws[\\\/'", ]{1,6}credentials/
        $kube = /\.kube[\\\/'", ]{1,6}config/
        $docker = /\.docker[\\\/'", ]{1,6}config\.json/
        $gcloud = /\.config[\\\/'", ]{1,6}gcloud/
        $azure = /\.azure[\\\/'", ]{1,6}(accessTokens\.json|msal_token_cache)/
        $gh = /\.config[\\\/'", ]{1,6}gh[\\\/'", ]{1,6}hosts\.yml/
        $git = ".git-credentials"
        $pypirc = ".pypirc"
        $npmrc = ".npmrc"
        $netrc = /['"\\\/]\.netrc['"]/
    condition:
        3 of them
}

rule env_dump_exfiltration {
    meta:
        description = "serialises the whole process environment (API keys, tokens) and sends it out"
        author = "dragonfly-client"
        weight = 7
        filetype = ".py .pyw .pth"
    strings:
        $direct_post = /(requests|httpx)\.post\s*\([^\n]{0,200}(json|data)\s*=\s*(dict\s*\(\s*)?os\.environ\b/
        $dump = /(json\.dumps|str|repr|urlencode)\s*\(\s*(dict\s*\(\s*)?os\.environ\b/
        $send = /\b(requests\.post|httpx\.post|urlopen|sendMessage|sendDocument|smtplib\.SMTP)\b|\/api\/webhooks\//
    condition:
        $direct_post or ($dump and $send)
}

rule crypto_wallet_paths {
    meta:
        description = "refers to the data directories or browser extensions of several cryptocurrency wallets"
        author = "dragonfly-client"
        weight = 7
        filetype = ".py .pyw .pth"
    strings:
        $exodus = /Exodus[\\\/'", ]{1,6}exodus\.wallet/
        $electrum = /Electrum[\\\/'", ]{1,6}wallets/
        $atomic = /atomic[\\\/'", ]{1,6}Local Storage/
        $ethereum = /Ethereum[\\\/'", ]{1,6}keystore/
        $wallet_dat = "wallet.dat"
        $jaxx = "com.liberty.jaxx"
        $coinomi = /Coinomi[\\\/'", ]{1,6}Coinomi/
        $guarda = /Guarda[\\\/'", ]{1,6}Local Storage/
        // Browser extension ids of MetaMask, Phantom and Coinbase Wallet.
        $metamask = "nkbihfbeogaeaoehlefnkodbefgpgknn"
        $phantom = "bfnaelmomeimhlpmgjnjophhpkkoljpa"
        $coinbase = "hnfanknocfeofbddgcijnmhnfnkdnaad"
    condition:
        2 of them
}
