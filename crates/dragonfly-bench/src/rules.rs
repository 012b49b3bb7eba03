//! The bench rules: the bundled rules plus a deterministic set of generated
//! ones, shaped like a real rule repository (most rules restricted by
//! `filetype`, some not; literal strings and a few regexes; few matches).

use std::collections::BTreeMap;

use dragonfly_engine::RuleSet;

/// Generated rules, on top of the bundled ones.
pub const GENERATED_RULES: usize = 80;
/// Generated rules per rule file.
const RULES_PER_FILE: usize = 10;

/// `filetype` values cycled through; `None` means every file.
const FILETYPES: &[Option<&str>] = &[
    Some(".py"),
    Some(".py .pyw"),
    Some("setup.py"),
    Some(".js .mjs .cjs"),
    Some(".py .pth"),
    Some(".sh .bash"),
    Some(".ps1 .bat .cmd"),
    None,
    Some(".pth"),
    Some(".py .pyw .pth .sh"),
    Some("__init__.py"),
    Some(".json .cfg .toml .ini"),
];

/// Indicator fragments, as found in real malware rules. Some occur in
/// benign code too, so atoms hit and conditions decide.
const FRAGMENTS: &[&str] = &[
    "base64.b64decode(",
    "exec(",
    "eval(",
    "marshal.loads(",
    "zlib.decompress(",
    "__import__(",
    "subprocess.Popen(",
    "os.system(",
    "socket.socket(",
    "requests.post(",
    "urllib.request.urlopen(",
    "discord.com/api/webhooks",
    "api.telegram.org/bot",
    "pastebin.com/raw",
    "transfer.sh",
    "ngrok.io",
    "Login Data",
    "Local State",
    "wallet.dat",
    "Electrum",
    "browser_cookie3",
    "pynput.keyboard",
    "ImageGrab.grab(",
    "getpass.getuser()",
    "platform.node()",
    "uuid.getnode()",
    "ctypes.windll",
    "VirtualAlloc",
    "CreateRemoteThread",
    "WriteProcessMemory",
    "powershell -enc",
    "Invoke-Expression",
    "DownloadString(",
    "certutil -urlcache",
    "/dev/tcp/",
    "nc -e /bin/sh",
    "chmod +x",
    "crontab -l",
    ".ssh/id_rsa",
    "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN",
    "child_process",
    "require('https')",
    "process.env",
    "String.fromCharCode(",
    "cmdclass",
    "install_requires",
    "setuptools.command.install",
    "sitecustomize",
    "codecs.decode(",
    "binascii.unhexlify(",
    "import os",
    "os.getenv(",
    "open(__file__",
];

/// Regular expressions with usable atoms, as `/.../` YARA text.
const REGEXES: &[&str] = &[
    r"/https?:\/\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(:[0-9]{2,5})?\//",
    r"/exec\(\s*(base64|zlib|marshal|codecs)\./",
    r"/discord(app)?\.com\/api\/webhooks\/[0-9]{17,20}\//",
    r"/stratum\+tcp:\/\/[a-z0-9.\-]{4,64}:[0-9]{2,5}/",
    r"/AKIA[0-9A-Z]{16}/",
    r"/(curl|wget) [^|\n]{1,200}\| ?(ba)?sh/",
    r"/powershell(\.exe)? +-(e|en|enc|encodedcommand) +[A-Za-z0-9+\/=]{40}/",
    r"/[a-z]{3,12}\.(tk|ml|ga|cf|gq)\/[a-z0-9]{4,}/",
];

/// Strings for the rules that apply to every file (binaries included):
/// rare in benign content.
const ANY_FILE_FRAGMENTS: &[&str] = &[
    "-----BEGIN RSA PRIVATE KEY-----",
    "stratum+tcp://",
    "xmrig",
    "/etc/shadow",
    "YOUR FILES HAVE BEEN ENCRYPTED",
    "cryptonight",
    "ETH_WALLET=",
    "HKEY_CURRENT_USER\\\\Software\\\\Microsoft\\\\Windows\\\\CurrentVersion\\\\Run",
];

/// Escapes a fragment for a YARA text string (no `"` in the tables; the
/// backslashes of the registry path are already doubled).
fn quoted(fragment: &str) -> String {
    format!("\"{fragment}\"")
}

/// The `index`-th generated rule.
fn generated_rule(index: usize) -> String {
    let filetype = FILETYPES[index % FILETYPES.len()];
    let weight = 1 + (index * 7) % 10;
    // `(identifier, string)`; `$a` is the anchor some conditions single out.
    let mut strings: Vec<(String, String)> = Vec::new();
    let condition = if filetype.is_none() {
        // Rules for every file: one or two rare strings.
        let nth = index / FILETYPES.len();
        let a = ANY_FILE_FRAGMENTS[nth % ANY_FILE_FRAGMENTS.len()];
        let b = ANY_FILE_FRAGMENTS[(nth + 3) % ANY_FILE_FRAGMENTS.len()];
        strings.push(("$s0".into(), quoted(a)));
        if a != b {
            strings.push(("$s1".into(), quoted(b)));
        }
        if index.is_multiple_of(3) {
            strings.push(("$re".into(), REGEXES[(index / 3) % REGEXES.len()].to_owned()));
        }
        "any of them".to_owned()
    } else {
        let count = 2 + index % 3;
        for k in 0..count {
            let fragment = FRAGMENTS[(index * 5 + k * 11) % FRAGMENTS.len()];
            let text = quoted(fragment);
            // Some strings in both encodings, some case-insensitive.
            let text = match (index + k) % 9 {
                0 => format!("{text} nocase"),
                4 => format!("{text} ascii wide"),
                _ => text,
            };
            strings.push((if k == 0 { "$a".to_owned() } else { format!("$s{k}") }, text));
        }
        if index % 4 == 1 {
            strings.push(("$re".into(), REGEXES[index % REGEXES.len()].to_owned()));
        }
        // A unique marker that never occurs: most rules match nothing.
        strings.push(("$marker".into(), quoted(&format!("dfbench_{index:03}_marker"))));
        match index % 4 {
            0 => "all of them".to_owned(),
            1 => format!("2 of them and filesize < {}MB", 1 + index % 8),
            2 => "$a and #a > 2 and any of ($s*, $marker)".to_owned(),
            _ => "$a at 0 and any of ($s*, $marker)".to_owned(),
        }
    };
    let mut text = format!("rule bench_generated_{index:03}\n{{\n    meta:\n        weight = {weight}\n");
    if let Some(filetype) = filetype {
        text.push_str(&format!("        filetype = \"{filetype}\"\n"));
    }
    text.push_str(&format!("        description = \"generated bench rule {index}\"\n    strings:\n"));
    for (name, string) in &strings {
        text.push_str(&format!("        {name} = {string}\n"));
    }
    text.push_str(&format!("    condition:\n        {condition}\n}}\n\n"));
    text
}

/// The generated rule files, `(file name, source)`.
pub fn generated_sources() -> Vec<(String, String)> {
    let files = GENERATED_RULES.div_ceil(RULES_PER_FILE);
    (0..files)
        .map(|file| {
            let first = file * RULES_PER_FILE;
            let last = (first + RULES_PER_FILE).min(GENERATED_RULES);
            let source: String = (first..last).map(generated_rule).collect();
            (format!("bench_{file:02}.yar"), source)
        })
        .collect()
}

/// Every bench rule file: the bundled ones, then the generated ones.
pub fn bench_sources() -> Vec<(String, String)> {
    let mut sources: Vec<(String, String)> =
        RuleSet::bundled_sources().map(|(name, source)| (name.to_owned(), source.to_owned())).collect();
    sources.extend(generated_sources());
    sources
}

/// A short digest of the sources (the test kit's rule hash), used as the
/// rule-set hash.
pub fn sources_hash(sources: &[(String, String)]) -> String {
    let map: BTreeMap<String, String> = sources.iter().cloned().collect();
    format!("bench-{}", &dragonfly_testkit::server::rules_hash(&map)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_rules_compile_and_are_shaped_like_a_real_set() {
        let sources = bench_sources();
        let rules = RuleSet::compile(sources_hash(&sources), sources.iter().map(|(n, s)| (n, s))).unwrap();
        let all = rules.rules();
        assert!(all.len() >= 100, "{} rules", all.len());
        let generated: Vec<_> = all.iter().filter(|r| r.name.starts_with("bench_generated_")).collect();
        assert_eq!(generated.len(), GENERATED_RULES);
        let unrestricted = all.iter().filter(|r| r.filetypes.is_none()).count();
        assert!(unrestricted > 0, "some rules apply to every file");
        assert!(unrestricted * 5 < all.len(), "most rules are restricted: {unrestricted}");
        assert!(generated.iter().all(|r| r.weight > 0));
        // The filetypes are read as suffix lists.
        assert!(all.iter().any(|r| r.filetypes.as_deref() == Some(&["setup.py".to_owned()][..])));
    }

    #[test]
    fn generated_rules_are_deterministic_and_mostly_quiet() {
        assert_eq!(generated_sources(), generated_sources());
        let sources = generated_sources();
        let rules = RuleSet::compile("g", sources.iter().map(|(n, s)| (n, s))).unwrap();
        assert_eq!(rules.warnings(), &[] as &[String]);
        let mut scanner = yara_x::Scanner::new(rules.yara());
        // Ordinary code matches nothing; a file with a rare string matches
        // one of the rules that apply to every file.
        let benign =
            b"\"\"\"Loads data.\"\"\"\nimport json\n\ndef load(path):\n    return json.load(open(path))\n";
        assert_eq!(scanner.scan(benign).unwrap().matching_rules().count(), 0);
        let miner = format!("pool = '{}pool.example:3333'\n", "stratum+tcp://");
        let matched: Vec<String> = scanner
            .scan(miner.as_bytes())
            .unwrap()
            .matching_rules()
            .map(|r| r.identifier().to_owned())
            .collect();
        assert!(!matched.is_empty());
        let unrestricted: Vec<&str> =
            rules.rules().iter().filter(|r| r.filetypes.is_none()).map(|r| r.name.as_str()).collect();
        assert!(matched.iter().all(|m| unrestricted.contains(&m.as_str())), "{matched:?}");
    }

    #[test]
    fn hash_follows_content() {
        let a = vec![("a.yar".to_owned(), "rule a { condition: true }".to_owned())];
        let b = vec![("a.yar".to_owned(), "rule b { condition: true }".to_owned())];
        assert_eq!(sources_hash(&a), sources_hash(&a.clone()));
        assert_ne!(sources_hash(&a), sources_hash(&b));
    }
}
