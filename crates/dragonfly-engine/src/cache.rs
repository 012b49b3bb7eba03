//! The byte format of compiled rules for the rule cache: every compiled
//! rule set (the whole set first, then each group) and the group table.

use crate::plan::{GroupId, GroupTable, MAX_GROUPS};

/// First bytes of a serialized rule set (the format's version included).
pub(crate) const MAGIC: &[u8; 8] = b"DFRULES4";

/// Occurs when compiled rules cannot be written or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Occurs when the bytes were not written by this version of the engine.
    #[error("not a serialized rule set of this version")]
    Version,
    /// Occurs when the bytes end early.
    #[error("truncated")]
    Truncated,
    /// Occurs when more bytes follow the end of the data.
    #[error("trailing bytes")]
    TrailingBytes,
    /// Occurs when the number of compiled rule sets is out of range.
    #[error("bad number of compiled rule sets: {0}")]
    Count(u64),
    /// Occurs when the group table names a group that is not there.
    #[error("bad group {0}")]
    Group(u64),
    /// Occurs when a file-type suffix is empty, or a name is not UTF-8.
    #[error("a file-type suffix is empty, or a name is not UTF-8")]
    Suffix,
    /// Occurs when yara-x cannot serialize or deserialize compiled rules.
    #[error("compiled rules: {0}")]
    Rules(String),
}

/// What the cache holds besides the compiled rules: the group table and
/// the file each rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) table: GroupTable,
    /// `(rule name, rule file)`.
    pub(crate) sources: Vec<(String, String)>,
}

/// Frames compiled rule blobs (the whole set first, then each group), the
/// group table and the rule files into one byte string.
pub(crate) fn encode(blobs: &[Vec<u8>], layout: &Layout) -> Vec<u8> {
    let table = &layout.table;
    fn put(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    let mut out = MAGIC.to_vec();
    put(&mut out, blobs.len());
    for blob in blobs {
        put(&mut out, blob.len());
        out.extend_from_slice(blob);
    }
    put(&mut out, table.by_suffix.len());
    for (suffix, group) in &table.by_suffix {
        put(&mut out, suffix.len());
        out.extend_from_slice(suffix.as_bytes());
        put(&mut out, group.0);
    }
    put(&mut out, table.default.0);
    put(&mut out, layout.sources.len());
    for (rule, source) in &layout.sources {
        for text in [rule, source] {
            put(&mut out, text.len());
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

/// Reads what [`encode`] wrote: the blobs and the layout.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Vec<&[u8]>, Layout), CacheError> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: u64) -> Result<&'a [u8], CacheError> {
            let n = usize::try_from(n).ok().filter(|&n| n <= self.0.len()).ok_or(CacheError::Truncated)?;
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn number(&mut self) -> Result<u64, CacheError> {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(self.take(8)?);
            Ok(u64::from_le_bytes(bytes))
        }
    }
    let mut reader = Reader(bytes);
    if reader.take(MAGIC.len() as u64).ok() != Some(MAGIC.as_slice()) {
        return Err(CacheError::Version);
    }
    let count = reader.number()?;
    if count == 0 || count > MAX_GROUPS as u64 + 1 {
        return Err(CacheError::Count(count));
    }
    let mut blobs = Vec::new();
    for _ in 0..count {
        let n = reader.number()?;
        blobs.push(reader.take(n)?);
    }
    let group = |id: u64| if id < count { Ok(GroupId(id as usize)) } else { Err(CacheError::Group(id)) };
    let suffixes = reader.number()?;
    let mut table = GroupTable::none();
    for _ in 0..suffixes {
        let n = reader.number()?;
        let suffix = std::str::from_utf8(reader.take(n)?).map_err(|_| CacheError::Suffix)?.to_owned();
        if suffix.is_empty() {
            return Err(CacheError::Suffix);
        }
        table.by_suffix.push((suffix, group(reader.number()?)?));
    }
    table.default = group(reader.number()?)?;
    let text = |reader: &mut Reader<'_>| -> Result<String, CacheError> {
        let n = reader.number()?;
        std::str::from_utf8(reader.take(n)?).map(str::to_owned).map_err(|_| CacheError::Suffix)
    };
    let count = reader.number()?;
    let mut sources = Vec::new();
    for _ in 0..count {
        sources.push((text(&mut reader)?, text(&mut reader)?));
    }
    if !reader.0.is_empty() {
        return Err(CacheError::TrailingBytes);
    }
    Ok((blobs, Layout { table, sources }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleSet;
    use crate::source::tests::SOURCE;

    #[test]
    fn groups_survive_serialization() {
        let rules = RuleSet::compile("h", [("a.yar", SOURCE)]).unwrap();
        let back = RuleSet::deserialize("h", &rules.serialize().unwrap()).unwrap();
        assert_eq!(back.group_count(), rules.group_count());
        assert_eq!(back.table(), rules.table());
        for path in ["a.py", "b.js", "c.so"] {
            let count = |r: &RuleSet| r.group_rules(r.group_for(path)).iter().count();
            assert_eq!(count(&back), count(&rules), "{path}");
        }
        let bytes = rules.serialize().unwrap();
        for cut in [0, 8, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        let error = |bytes: &[u8]| decode(bytes).expect_err("refused");
        assert_eq!(error(&trailing), CacheError::TrailingBytes);
        // The default group's id (then no rule files): one past the blobs.
        let mut bad_group = encode(&[vec![1, 2]], &Layout { table: GroupTable::none(), sources: Vec::new() });
        let at = bad_group.len() - 16;
        bad_group[at..at + 8].copy_from_slice(&99u64.to_le_bytes());
        assert_eq!(error(&bad_group), CacheError::Group(99));
        // An empty suffix would match every path.
        let mut empty = GroupTable::none();
        empty.by_suffix.push((String::new(), GroupId::WHOLE_SET));
        let empty_suffix = encode(&[vec![1, 2]], &Layout { table: empty, sources: Vec::new() });
        assert_eq!(error(&empty_suffix), CacheError::Suffix);
        let mut no_blobs = MAGIC.to_vec();
        no_blobs.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(error(&no_blobs), CacheError::Count(0));
    }
}
