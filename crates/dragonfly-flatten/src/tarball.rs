//! Tar streams, plain or decompressed on the fly, read the way CPython's
//! `tarfile` reads them (it is what pip unpacks sdists with), plus whatever
//! other readers would see differently.
//!
//! Headers are parsed here rather than by a tar library, because the name
//! a file gets decides which rules scan it and libraries resolve names their
//! own way. For every member the name CPython gives it is the file's path;
//! every other name a reader could give it (each PAX `path` record, a GNU
//! long name, `GNU.sparse.name`, a global header's path, the header's own
//! name field) becomes an alias. Links come out as files under the link's
//! name with the content of every member they can resolve to. Where readers
//! disagree on where the next header starts (data after a directory or link
//! header, an unreadable PAX size), the stream is read a second time the way
//! GNU tar and the `tar` crate read it, and files only that reading finds
//! are added. A file CPython extracts with more bytes than lie before the
//! next header (a global PAX size) is read again from the stream in full.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read};

use crate::budget::{Budget, StreamCounter};
use crate::names::{self, nts};
use crate::{Anomaly, AnomalyKind, Error, File, Format, Skipped};

/// Read-ahead between the decompressor and the header parser.
const STREAM_BUFFER: usize = 64 << 10;
const BLOCK: u64 = 512;
/// Links followed from one link before giving up (a loop, or a long chain).
const MAX_LINK_HOPS: usize = 8;

/// How a reader finds the next header after a member.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// CPython: only regular files and unknown types have data; an
    /// unreadable PAX size is 0.
    Python,
    /// GNU tar and the `tar` crate: every member's size is skipped; an
    /// unreadable PAX size leaves the header's size.
    Gnu,
}

/// What a member is, from its type flag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Directory,
    Symlink,
    Hardlink,
    Other,
}

/// One member, its names resolved.
struct Member {
    name: String,
    aliases: Vec<String>,
    kind: Kind,
    link: String,
    /// Offset of its data in the tar stream.
    data_offset: u64,
    /// Bytes from its data to the next header (zero for members without
    /// data in the dialect).
    span: u64,
    /// Bytes an extraction writes: CPython's final size, which global and
    /// sparse records may set apart from the span.
    content: u64,
}

impl Member {
    /// Whether its content ends before the next header, so that it can be
    /// read on the way; else it is fetched in a later pass.
    fn inline(&self) -> bool {
        self.content <= blocks(self.span)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// PAX records with Python `dict` semantics: a key keeps its first
/// position and takes its last value.
#[derive(Clone, Default)]
struct Pax(Vec<(Vec<u8>, Vec<u8>)>);

impl Pax {
    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
}

/// A header that extends the member after it.
enum Extension {
    LongName(Vec<u8>),
    LongLink(Vec<u8>),
    /// A local PAX header: the global records at that point plus its own.
    Pax(Pax),
    Global,
}

/// A parsed 512-byte header block.
struct Header {
    name: Vec<u8>,
    /// The name without the ustar prefix, when a prefix was joined to it.
    bare_name: Option<Vec<u8>>,
    type_flag: u8,
    size: i128,
    link: Vec<u8>,
    /// Old GNU sparse header: more sparse-map blocks follow it.
    sparse_extended: bool,
    /// A pre-POSIX (`\0`) type made a directory by its trailing slash.
    old_style_directory: bool,
}

enum Block {
    Zero,
    Invalid,
    Header(Header),
}

/// Whitespace Python's `str.strip()` and `int()` remove, in ASCII.
fn is_python_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// Most digits Python's `int()` reads in base 10 (`sys.int_info.default_max_str_digits`).
const PYTHON_MAX_DIGITS: usize = 4300;

/// How Python's `int(text, radix)` reads ASCII `text`: surrounding
/// whitespace, a sign, `_` between digits, `0o` for radix 8. `None` where
/// Python raises `ValueError`. Saturates far beyond any real size.
fn python_int(text: &[u8], radix: u32) -> Option<i128> {
    let start = text.iter().position(|&b| !is_python_space(b))?;
    let end = text.iter().rposition(|&b| !is_python_space(b))? + 1;
    let text = &text[start..end];
    let (negative, text) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let text = match text {
        [b'0', b'o' | b'O', rest @ ..] if radix == 8 => rest.strip_prefix(b"_").unwrap_or(rest),
        _ => text,
    };
    if text.is_empty()
        || text.starts_with(b"_")
        || text.ends_with(b"_")
        || text.windows(2).any(|w| w == b"__")
    {
        return None;
    }
    if radix == 10 && text.iter().filter(|&&b| b != b'_').count() > PYTHON_MAX_DIGITS {
        return None;
    }
    let mut value: i128 = 0;
    for &b in text.iter().filter(|&&b| b != b'_') {
        let digit = char::from(b).to_digit(radix)?;
        value = value.saturating_mul(i128::from(radix)).saturating_add(i128::from(digit));
    }
    Some(if negative { -value } else { value })
}

/// A numeric header field, as CPython's `nti`: base-256 (two's complement
/// when the first byte is 0xff) or octal text. `None` where CPython
/// refuses the header.
fn number(field: &[u8]) -> Option<i128> {
    match field.first() {
        Some(&first) if first == 0x80 || first == 0xff => {
            let n =
                field[1..].iter().fold(0i128, |n, &b| n.saturating_mul(256).saturating_add(i128::from(b)));
            if first == 0xff {
                let modulus = 1i128.checked_shl(8 * (field.len() as u32 - 1)).unwrap_or(i128::MAX);
                Some(n - modulus)
            } else {
                Some(n)
            }
        }
        _ => {
            let text = nts(field);
            if !text.is_ascii() {
                return None;
            }
            if text.iter().all(|&b| is_python_space(b)) { Some(0) } else { python_int(text, 8) }
        }
    }
}

/// A size that can be used: negative sizes are 0.
fn to_size(n: i128) -> u64 {
    u64::try_from(n.max(0)).unwrap_or(u64::MAX)
}

fn parse_header(block: &[u8; 512]) -> Block {
    if block.iter().all(|&b| b == 0) {
        return Block::Zero;
    }
    let Some(stored) = number(&block[148..156]) else {
        return Block::Invalid;
    };
    let unsigned: i128 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i128::from(b) })
        .sum();
    let signed: i128 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { i128::from(b as i8) })
        .sum();
    if stored != unsigned && stored != signed {
        return Block::Invalid;
    }
    let Some(size) = number(&block[124..136]) else {
        return Block::Invalid;
    };
    let mut type_flag = block[156];
    let mut name = nts(&block[..100]).to_vec();
    let old_style_directory = type_flag == 0 && name.ends_with(b"/");
    if old_style_directory {
        type_flag = b'5';
    }
    if type_flag == b'5' {
        trim_slashes(&mut name);
    }
    let prefix = nts(&block[345..500]);
    let mut bare_name = None;
    if !prefix.is_empty() && !matches!(type_flag, b'L' | b'K' | b'S') {
        let mut joined = prefix.to_vec();
        joined.push(b'/');
        joined.extend_from_slice(&name);
        // A POSIX header's prefix is read by every reader; GNU headers keep
        // other data there, which only CPython joins.
        if &block[257..263] != b"ustar\0" {
            bare_name = Some(std::mem::replace(&mut name, joined));
        } else {
            name = joined;
        }
    }
    Block::Header(Header {
        name,
        bare_name,
        type_flag,
        size,
        link: nts(&block[157..257]).to_vec(),
        sparse_extended: type_flag == b'S' && block[482] != 0,
        old_style_directory,
    })
}

fn trim_slashes(name: &mut Vec<u8>) {
    while name.len() > 1 && name.ends_with(b"/") {
        name.pop();
    }
}

fn kind_of(type_flag: u8) -> Kind {
    match type_flag {
        b'5' => Kind::Directory,
        b'2' => Kind::Symlink,
        b'1' => Kind::Hardlink,
        b'3' | b'4' | b'6' => Kind::Other,
        // Regular, contiguous, sparse, and unknown types (CPython extracts
        // those as regular files).
        _ => Kind::File,
    }
}

/// Whether CPython reads data after a header of this type.
fn python_has_data(type_flag: u8) -> bool {
    !matches!(type_flag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

fn blocks(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// Parses PAX records leniently: what frames correctly is kept, the first
/// record that does not ends the parse (and is an anomaly).
fn parse_pax(buf: &[u8], into: &mut Pax, raw: &mut Vec<(Vec<u8>, Vec<u8>)>) -> bool {
    let mut pos = 0;
    while pos < buf.len() && buf[pos] != 0 {
        let rest = &buf[pos..];
        let Some(space) = rest.iter().position(|&b| b == b' ') else { return false };
        let Some(Some(length)) = std::str::from_utf8(&rest[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .map(|s| s.parse::<usize>().ok())
        else {
            return false;
        };
        if length < 5 || length > rest.len() || rest[length - 1] != b'\n' || space + 1 >= length {
            return false;
        }
        let record = &rest[space + 1..length - 1];
        let Some(eq) = record.iter().position(|&b| b == b'=') else { return false };
        if eq == 0 {
            return false;
        }
        let (key, value) = (record[..eq].to_vec(), record[eq + 1..].to_vec());
        raw.push((key.clone(), value.clone()));
        into.set(key, value);
        pos += length;
    }
    true
}

/// Walks the headers of one tar stream.
struct Walker<'a, R> {
    reader: BufReader<R>,
    format: Format,
    budget: &'a Budget,
    dialect: Dialect,
    /// Offset in the tar stream of the next byte `reader` yields.
    pos: u64,
    /// Where the next header starts.
    next_header: u64,
    global: Pax,
    seen_header: bool,
    /// The member last reached, to say where a stream error happened.
    last: Option<String>,
    anomalies: Vec<Anomaly>,
    divergent: bool,
}

impl<'a, R: Read> Walker<'a, R> {
    fn new(reader: R, format: Format, budget: &'a Budget, dialect: Dialect) -> Self {
        Walker {
            reader: BufReader::with_capacity(STREAM_BUFFER, reader),
            format,
            budget,
            dialect,
            pos: 0,
            next_header: 0,
            global: Pax::default(),
            seen_header: false,
            last: None,
            anomalies: Vec::new(),
            divergent: false,
        }
    }

    fn io_error(&self, err: io::Error) -> Error {
        match self.budget.io_error(err, self.format, self.last.as_deref()) {
            Error::Corrupt { format, path: None, message } if !self.seen_header => Error::Corrupt {
                format,
                path: None,
                message: format!("can not read the first tar header: {message}"),
            },
            err => err,
        }
    }

    fn corrupt(&self, message: String) -> Error {
        Error::Corrupt { format: self.format, path: self.last.clone(), message }
    }

    fn anomaly(&mut self, kind: AnomalyKind, path: Option<&str>) {
        self.anomalies.push(Anomaly { kind, path: path.map(str::to_owned) });
    }

    /// Reads up to `buf.len()` bytes; fewer only at the end of the stream.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        self.pos += filled as u64;
        Ok(filled)
    }

    /// Skips to `offset`; false if the stream ends first.
    fn skip_to(&mut self, offset: u64) -> Result<bool, Error> {
        if offset <= self.pos {
            return Ok(true);
        }
        let want = offset - self.pos;
        let skipped =
            io::copy(&mut (&mut self.reader).take(want), &mut io::sink()).map_err(|e| self.io_error(e))?;
        self.pos += skipped;
        Ok(skipped == want)
    }

    /// The next block, `None` at the end of the stream. A partial block at
    /// the end is trailing data.
    fn block(&mut self) -> Result<Option<[u8; 512]>, Error> {
        let mut block = [0u8; 512];
        let n = self.fill(&mut block)?;
        if n == 512 {
            return Ok(Some(block));
        }
        if block[..n].iter().any(|&b| b != 0) {
            let last = self.last.clone();
            self.anomaly(AnomalyKind::TrailingData, last.as_deref());
        }
        Ok(None)
    }

    /// Reads an extension header's data with its padding (CPython reads
    /// the whole padded block), within the header limit.
    fn extension_data(&mut self, size: u64) -> Result<Vec<u8>, Error> {
        let limit = self.budget.header_limit();
        if size > limit {
            return Err(Error::LimitExceeded {
                kind: crate::LimitKind::HeaderBytes,
                limit,
                path: self.last.clone(),
            });
        }
        let mut data = vec![0u8; blocks(size) as usize];
        if self.fill(&mut data)? < data.len() {
            return Err(self.corrupt("truncated extended header".to_owned()));
        }
        Ok(data)
    }

    /// The next member, its names resolved; `None` at the end.
    fn next_member(&mut self) -> Result<Option<Member>, Error> {
        if !self.skip_to(self.next_header)? {
            return Err(self.corrupt("truncated entry".to_owned()));
        }
        let mut extensions: Vec<Extension> = Vec::new();
        let mut raw_names: Vec<Vec<u8>> = Vec::new();
        let header = loop {
            let Some(block) = self.block()? else {
                if !extensions.is_empty() {
                    self.anomaly(AnomalyKind::InvalidHeader, None);
                }
                return Ok(None);
            };
            let header = match parse_header(&block) {
                Block::Zero => continue,
                Block::Invalid if !self.seen_header => {
                    return Err(
                        self.corrupt("can not read the first tar header: not a tar header".to_owned())
                    );
                }
                Block::Invalid => {
                    // CPython stops here; GNU tar skips to the next valid
                    // header. Read on, so nothing after it goes unscanned.
                    let last = self.last.clone();
                    self.anomaly(AnomalyKind::InvalidHeader, last.as_deref());
                    continue;
                }
                Block::Header(header) => header,
            };
            self.seen_header = true;
            if header.size < 0 {
                let last = self.last.clone();
                self.anomaly(AnomalyKind::InvalidNumber, last.as_deref());
            }
            let size = to_size(header.size);
            match header.type_flag {
                b'L' | b'K' | b'x' | b'X' | b'g' => {
                    self.budget.count_entry(self.last.as_deref().unwrap_or(""))?;
                    let padded = self.extension_data(size)?;
                    // CPython reads the padded block; other readers the size.
                    let exact = &padded[..size as usize];
                    let extension = match header.type_flag {
                        b'L' => {
                            let name = nts(&padded);
                            if name.len() < size as usize && exact[name.len()..].iter().any(|&b| b != 0) {
                                self.anomaly(AnomalyKind::NameWithNul, Some(&names::readable(name)));
                            }
                            raw_names.push(nts(exact).to_vec());
                            Extension::LongName(name.to_vec())
                        }
                        b'K' => Extension::LongLink(nts(&padded).to_vec()),
                        b'g' => {
                            let mut raw = Vec::new();
                            let mut global = std::mem::take(&mut self.global);
                            if !parse_pax(&padded, &mut global, &mut raw) {
                                self.anomaly(AnomalyKind::InvalidHeader, None);
                            }
                            self.global = global;
                            if raw.iter().any(|(k, _)| is_name_key(k) || k == b"size" || k == b"linkpath") {
                                self.anomaly(AnomalyKind::GlobalHeader, None);
                            }
                            Extension::Global
                        }
                        _ => {
                            let mut local = self.global.clone();
                            let mut raw = Vec::new();
                            if !parse_pax(&padded, &mut local, &mut raw) {
                                self.anomaly(AnomalyKind::InvalidHeader, None);
                            }
                            parse_pax(exact, &mut Pax::default(), &mut raw);
                            raw_names.extend(raw.into_iter().filter(|(k, _)| is_name_key(k)).map(|(_, v)| v));
                            Extension::Pax(local)
                        }
                    };
                    extensions.push(extension);
                }
                _ => break (header, size),
            }
        };
        let (header, header_size) = header;
        self.resolve(header, header_size, extensions, raw_names).map(Some)
    }

    /// Applies extension headers as CPython does (innermost first: the one
    /// nearest the stream's start has the last word) and collects aliases.
    fn resolve(
        &mut self,
        header: Header,
        header_size: u64,
        extensions: Vec<Extension>,
        mut raw_names: Vec<Vec<u8>>,
    ) -> Result<Member, Error> {
        let type_flag = header.type_flag;
        let mut name = header.name.clone();
        let mut link = header.link.clone();
        let mut data_offset = self.pos;
        if header.sparse_extended {
            // Old GNU sparse: map blocks until one says no more follow.
            loop {
                let Some(block) = self.block()? else {
                    return Err(self.corrupt("truncated sparse header".to_owned()));
                };
                if block[504] == 0 {
                    break;
                }
            }
            data_offset = self.pos;
        }
        // Newer CPython keeps a `\0` type after extension headers a file
        // whatever its name; older ones make it a directory.
        let follower_file = header.old_style_directory && !extensions.is_empty();
        let python_data = python_has_data(type_flag);
        // CPython: the offset is fixed from the header's size before the
        // global records are applied; only a local `size` record moves it.
        let mut python_span = if python_data { header_size } else { 0 };
        let mut gnu_span = header_size;
        let mut content = header_size;
        let mut odd_size = false;
        if !self.global.0.is_empty() {
            let global = self.global.clone();
            let mut sizes = SizeRecords::default();
            apply_pax(&global, &mut name, &mut link, &mut sizes)?;
            odd_size |= sizes.odd;
            if let Some(size) = sizes.content {
                content = size;
                self.anomaly(AnomalyKind::GlobalHeader, Some(&names::readable(&name)));
            }
        }
        for extension in extensions.iter().rev() {
            match extension {
                Extension::LongName(long) => {
                    name = long.clone();
                    if type_flag == b'5' {
                        trim_slashes(&mut name);
                    }
                }
                Extension::LongLink(long) => link = long.clone(),
                Extension::Pax(pax) => {
                    let mut sizes = SizeRecords::default();
                    apply_pax(pax, &mut name, &mut link, &mut sizes)?;
                    odd_size |= sizes.odd;
                    if let Some(size) = sizes.content {
                        content = size;
                    }
                    if let Some(size) = sizes.python {
                        python_span = if python_data { size } else { 0 };
                    }
                    if let Some(size) = sizes.strict {
                        gnu_span = size;
                    }
                }
                Extension::Global => {}
            }
        }
        if odd_size {
            self.anomaly(AnomalyKind::InvalidNumber, Some(&names::readable(&name)));
        }
        if python_span != gnu_span || follower_file {
            self.divergent = true;
            self.anomaly(AnomalyKind::DivergentLayout, Some(&names::readable(&name)));
        }
        let (span, kind) = match self.dialect {
            Dialect::Python => (python_span, kind_of(type_flag)),
            Dialect::Gnu if follower_file => (gnu_span, Kind::File),
            Dialect::Gnu => (gnu_span, kind_of(type_flag)),
        };
        let content = match (self.dialect, kind) {
            (Dialect::Python, Kind::File) => content,
            _ => span,
        };
        self.next_header = data_offset.saturating_add(blocks(span));

        // Every other name some reader gives it. A header name of 99 or 100
        // bytes that starts the resolved name is no alias: writers store a
        // long name cut to fit the field.
        raw_names.push(header.name);
        raw_names.extend(header.bare_name);
        raw_names.extend(self.global.0.iter().filter(|(k, _)| is_name_key(k)).map(|(_, v)| v.clone()));
        let mut aliases: Vec<String> = Vec::new();
        for mut raw in raw_names {
            trim_slashes(&mut raw);
            if raw.is_empty() || raw == name || (name.starts_with(&raw) && raw.len() >= 99) {
                continue;
            }
            let alias = names::readable(&raw);
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
        let name = names::readable(&name);
        if !aliases.is_empty() {
            self.anomaly(AnomalyKind::ConflictingNames, Some(&name));
        }
        self.last = Some(name.clone());
        Ok(Member { name, aliases, kind, link: names::readable(&link), data_offset, span, content })
    }

    /// Reads the content of `member`, the member last returned, when it
    /// lies before the next header (see [`Member::inline`]).
    fn read_data(&mut self, member: &Member) -> Result<Vec<u8>, Error> {
        let len = member.content;
        let mut data = {
            let mut limited = (&mut self.reader).take(len);
            self.budget.read_file(&mut limited, len, self.format, &member.name)?
        };
        self.pos += data.len() as u64;
        if (data.len() as u64) < len {
            return Err(Error::Corrupt {
                format: self.format,
                path: Some(member.name.clone()),
                message: format!("truncated entry: {} of {len} bytes", data.len()),
            });
        }
        data.shrink_to_fit();
        Ok(data)
    }

    /// Reads the rest of the stream, so that a compressed stream's trailer
    /// is checked too.
    fn finish(mut self) -> Result<(Vec<Anomaly>, R), Error> {
        let rest = io::copy(&mut self.reader, &mut io::sink()).map_err(|e| self.io_error(e))?;
        self.pos += rest;
        Ok((self.anomalies, self.reader.into_inner()))
    }
}

/// How the size records of a PAX header read.
#[derive(Default)]
struct SizeRecords {
    /// Where CPython puts the next header: a `size` record (0 where
    /// `int()` refuses it).
    python: Option<u64>,
    /// Where GNU tar and the `tar` crate put it: a `size` record of plain
    /// digits.
    strict: Option<u64>,
    /// What CPython extracts: the last of the `size` and sparse size records.
    content: Option<u64>,
    /// A record that is not plain digits.
    odd: bool,
}

/// Applies PAX records to a member as CPython's `_apply_pax_info` does, in
/// record order. A size with non-ASCII characters is refused: Python reads
/// Unicode digits, and guessing its value wrong would hide data.
fn apply_pax(
    pax: &Pax,
    name: &mut Vec<u8>,
    link: &mut Vec<u8>,
    sizes: &mut SizeRecords,
) -> Result<(), Error> {
    for (key, value) in &pax.0 {
        match key.as_slice() {
            b"GNU.sparse.name" => *name = value.clone(),
            b"path" => {
                *name = value.clone();
                trim_slashes(name);
            }
            b"linkpath" => *link = value.clone(),
            b"size" | b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                if !value.is_ascii() {
                    return Err(Error::UnsupportedFeature {
                        format: Format::Tar,
                        path: Some(names::readable(name)),
                        message: "PAX size record with non-ASCII characters".to_owned(),
                    });
                }
                let python = to_size(python_int(value, 10).unwrap_or(0));
                let strict = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                    .flatten();
                sizes.odd |= strict.is_none();
                sizes.content = Some(python);
                if key == b"size" {
                    sizes.python = Some(python);
                    if strict.is_some() {
                        sizes.strict = strict;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_name_key(key: &[u8]) -> bool {
    key == b"path" || key == b"GNU.sparse.name"
}

/// Opens the tar stream inside `bytes` of `format`, for one pass.
pub(crate) type Open<'b> = dyn Fn() -> crate::Stream<'b> + 'b;

/// Bytes of the stream to hand over as a file in a later pass.
struct Region {
    offset: u64,
    len: u64,
    path: String,
    aliases: Vec<String>,
}

/// What one pass found, and what the later passes need from it.
struct Found {
    /// Data offset and content length of each file member, with its names.
    files: Vec<(u64, u64, Vec<String>)>,
    links: Vec<Member>,
    /// Files whose content runs past the next header.
    overlong: Vec<Region>,
    /// Whether readers disagree on where some header starts.
    divergent: bool,
}

/// Reads every member of the tar stream, handing each kept file to `visit`
/// as soon as it is read (so a caller need not hold them all).
pub(crate) fn flatten(
    open: &Open<'_>,
    format: Format,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
    anomalies: &mut Vec<Anomaly>,
) -> Result<Skipped, Error> {
    let mut skipped = Skipped::default();
    let mut found = main_pass(open, format, budget, keep, visit, anomalies, &mut skipped)?;
    if found.divergent {
        gnu_pass(open, format, budget, keep, visit, &found)?;
    }
    let mut regions = std::mem::take(&mut found.overlong);
    if !found.links.is_empty() {
        regions.extend(link_regions(budget, keep, anomalies, &found, &mut skipped)?);
    }
    if !regions.is_empty() {
        fetch(open(), format, budget, regions, visit)?;
    }
    Ok(skipped)
}

fn main_pass(
    open: &Open<'_>,
    format: Format,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
    anomalies: &mut Vec<Anomaly>,
    skipped: &mut Skipped,
) -> Result<Found, Error> {
    let mut walker = Walker::new(StreamCounter::new(open(), budget), format, budget, Dialect::Python);
    let mut found = Found { files: Vec::new(), links: Vec::new(), overlong: Vec::new(), divergent: false };
    while let Some(member) = walker.next_member()? {
        budget.count_entry(&member.name)?;
        match member.kind {
            Kind::File => {
                found.files.push((
                    member.data_offset,
                    member.content,
                    member.names().map(str::to_owned).collect(),
                ));
                if !member.names().any(keep) {
                    skipped.filtered += 1;
                } else if member.inline() {
                    let data = walker.read_data(&member)?;
                    visit(File { path: member.name, aliases: member.aliases, data });
                } else {
                    let Member { name, aliases, data_offset, content, .. } = member;
                    found.overlong.push(Region { offset: data_offset, len: content, path: name, aliases });
                }
            }
            Kind::Directory => skipped.directories += 1,
            Kind::Symlink | Kind::Hardlink => found.links.push(member),
            Kind::Other => skipped.other += 1,
        }
    }
    found.divergent = walker.divergent;
    let seen_header = walker.seen_header;
    let (mut walker_anomalies, counter) = walker.finish()?;
    anomalies.append(&mut walker_anomalies);
    if counter.into_inner().trailing() {
        anomalies.push(Anomaly { kind: AnomalyKind::TrailingData, path: None });
    }
    if !seen_header && budget.stream_bytes() == 0 {
        return Err(Error::Corrupt { format, path: None, message: "empty tar stream".to_owned() });
    }
    Ok(found)
}

/// Reads the stream as GNU tar does, adding the files only it finds.
fn gnu_pass(
    open: &Open<'_>,
    format: Format,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
    found: &Found,
) -> Result<(), Error> {
    let known: HashSet<(u64, u64)> = found.files.iter().map(|(offset, len, _)| (*offset, *len)).collect();
    let mut walker = Walker::new(open(), format, budget, Dialect::Gnu);
    while let Some(member) = walker.next_member()? {
        if member.kind == Kind::File
            && !known.contains(&(member.data_offset, member.content))
            && member.names().any(keep)
        {
            budget.count_entry(&member.name)?;
            let data = walker.read_data(&member)?;
            visit(File { path: member.name, aliases: member.aliases, data });
        }
    }
    Ok(())
}

/// `a/./b/../c` to `a/c`, as `posixpath.normpath`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if path.starts_with('/') { format!("/{joined}") } else { joined }
}

/// Where a link points, as an archive path.
fn target_of(link: &Member) -> String {
    if link.kind == Kind::Symlink && !link.link.starts_with('/') {
        let dir = link.name.rsplit_once('/').map_or("", |(dir, _)| dir);
        normalize(&format!("{dir}/{}", link.link))
    } else {
        normalize(&link.link)
    }
}

/// The regions to hand over for links: each link under its own name with
/// the content of every file it resolves to (through other links too),
/// which is what an installer writes there. Every (link, file) pair counts
/// as an entry, so a link bomb stops at the entry limit.
fn link_regions(
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    anomalies: &mut Vec<Anomaly>,
    found: &Found,
    skipped: &mut Skipped,
) -> Result<Vec<Region>, Error> {
    let mut files_by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, (_, _, names)) in found.files.iter().enumerate() {
        for name in names {
            files_by_name.entry(normalize(name)).or_default().push(index);
        }
    }
    // Each link name to the distinct targets links of that name have.
    let mut targets_by_name: HashMap<String, Vec<String>> = HashMap::new();
    for link in &found.links {
        let target = target_of(link);
        for name in link.names() {
            let targets = targets_by_name.entry(normalize(name)).or_default();
            if !targets.contains(&target) {
                targets.push(target.clone());
            }
        }
    }
    let mut resolved: HashMap<String, Vec<usize>> = HashMap::new();
    let mut regions = Vec::new();
    for link in &found.links {
        let start = target_of(link);
        if !resolved.contains_key(&start) {
            let mut files: Vec<usize> = Vec::new();
            let mut visited: HashSet<String> = HashSet::new();
            let mut frontier = vec![start.clone()];
            for _ in 0..MAX_LINK_HOPS {
                let mut next = Vec::new();
                for name in frontier.drain(..) {
                    if !visited.insert(name.clone()) {
                        continue;
                    }
                    files.extend(files_by_name.get(&name).into_iter().flatten());
                    next.extend(targets_by_name.get(&name).into_iter().flatten().cloned());
                }
                frontier = next;
            }
            files.sort_unstable();
            files.dedup();
            resolved.insert(start.clone(), files);
        }
        let targets = &resolved[&start];
        let counted = match link.kind {
            Kind::Symlink => &mut skipped.symlinks,
            _ => &mut skipped.hardlinks,
        };
        if targets.is_empty() {
            *counted += 1;
            anomalies.push(Anomaly { kind: AnomalyKind::DanglingLink, path: Some(link.name.clone()) });
            continue;
        }
        anomalies.push(Anomaly { kind: AnomalyKind::Link, path: Some(link.name.clone()) });
        if !link.names().any(keep) {
            skipped.filtered += 1;
            continue;
        }
        for &target in targets {
            budget.count_entry(&link.name)?;
            let (offset, len, _) = found.files[target];
            regions.push(Region { offset, len, path: link.name.clone(), aliases: link.aliases.clone() });
        }
    }
    Ok(regions)
}

/// Hands over each region of the stream as a file, in one pass; regions
/// may overlap. Each counts toward the limits before it is read.
fn fetch(
    mut stream: crate::Stream<'_>,
    format: Format,
    budget: &Budget,
    mut regions: Vec<Region>,
    visit: &mut dyn FnMut(File),
) -> Result<(), Error> {
    regions.sort_by_key(|region| region.offset);
    let mut waiting = regions.into_iter().peekable();
    let mut open: Vec<(Region, Vec<u8>)> = Vec::new();
    let mut buf = vec![0u8; STREAM_BUFFER];
    let mut pos: u64 = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(budget.io_error(e, format, None)),
        };
        let end = pos + n as u64;
        while let Some(region) = waiting.next_if(|region| region.offset < end || n == 0) {
            budget.charge(region.len, &region.path)?;
            let capacity = usize::try_from(region.len).unwrap_or(usize::MAX).min(8 << 20);
            open.push((region, Vec::with_capacity(capacity)));
        }
        for (region, data) in &mut open {
            let from = region.offset.max(pos);
            let to = (region.offset + region.len).min(end);
            if from < to {
                data.extend_from_slice(&buf[(from - pos) as usize..(to - pos) as usize]);
            }
        }
        let mut index = 0;
        while index < open.len() {
            let (region, data) = &open[index];
            if region.offset + region.len <= end {
                let (region, data) = open.swap_remove(index);
                visit(File { path: region.path, aliases: region.aliases, data });
            } else if n == 0 {
                return Err(Error::Corrupt {
                    format,
                    path: Some(region.path.clone()),
                    message: format!("truncated entry: {} of {} bytes", data.len(), region.len),
                });
            } else {
                index += 1;
            }
        }
        if n == 0 || (open.is_empty() && waiting.peek().is_none()) {
            return Ok(());
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_python_does() {
        assert_eq!(python_int(b" 12 ", 10), Some(12));
        assert_eq!(python_int(b"\x0b12\x1f", 10), Some(12));
        assert_eq!(python_int(b"1_000", 10), Some(1000));
        assert_eq!(python_int(b"0_0", 10), Some(0));
        assert_eq!(python_int(b"abc", 10), None);
        assert_eq!(python_int(b"1__0", 10), None);
        assert_eq!(python_int(b"_1", 10), None);
        assert_eq!(python_int(b"-5", 10), Some(-5));
        assert_eq!(python_int(b"0o17", 8), Some(15));
        assert_eq!(python_int(b"0000017", 8), Some(15));
        assert_eq!(python_int(b"8", 8), None);
        // Python refuses more than 4300 digits in base 10 (leading zeros count).
        let long = [b"0".repeat(4300), b"1".to_vec()].concat();
        assert_eq!(python_int(&long, 10), None);
        assert_eq!(python_int(&long, 8), Some(1));
    }

    #[test]
    fn numbers_read_base_256_and_octal() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 7;
        assert_eq!(number(&field), Some(7));
        assert_eq!(number(&[0xff; 8]), Some(-1));
        assert_eq!(number(b"00000000017\0"), Some(15));
        assert_eq!(number(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(number(b"\x0b0000001750"), Some(0o1750));
        assert_eq!(number(b"-0000370\0"), Some(-0o370));
        assert_eq!(number(b"0000000001x\0"), None);
    }

    #[test]
    fn paths_normalize_like_posixpath() {
        assert_eq!(normalize("a/./b/../c"), "a/c");
        assert_eq!(normalize("../x"), "../x");
        assert_eq!(normalize("/a//b/"), "/a/b");
    }
}
