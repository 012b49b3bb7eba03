//! The worst-case queue of the memory section: the largest wheels first
//! (one of about 110 MB whose four files inflate to nearly the default
//! total limit), an sdist that inflates to 400 MB of small files, and a
//! gzip bomb, for a node under `DRAGONFLY_MEMORY_LIMIT`.

use std::io::Write;

use dragonfly_testkit::fixtures::{self, FixtureFile};

use crate::Archives;

/// Bytes of each of the big wheel's four files at scale 1.
const WHEEL_FILE_BYTES: usize = 120 << 20;
/// Bytes the big sdist inflates to at scale 1.
const SDIST_BYTES: usize = 400_000_000;
/// Bytes of one of its files.
const SDIST_FILE_BYTES: usize = 16 << 10;
/// Zeros in the bomb at scale 1.
const BOMB_BYTES: u64 = 2 << 30;

/// The queue, every size divided by `scale` (1 for the real thing).
pub fn queue(scale: usize) -> Vec<Archives> {
    vec![big_wheel(scale), big_sdist(scale), bomb(scale), small("after-1", "1.0"), small("after-2", "1.0")]
}

/// Compressible about 4.7 to 1: a random run and a repeated table row in
/// every 4 KiB, like the numeric data of binary wheels.
fn table_bytes(len: usize, seed: u64) -> Vec<u8> {
    let row = b"0.000000 1.000000 2.718281 3.141592 1.414213 0.577215 1.618033 2.502907\n";
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        for _ in 0..(720 / 8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&state.to_le_bytes());
        }
        while out.len() % 4096 != 0 {
            let at = out.len() % row.len();
            out.push(row[at]);
        }
    }
    out.truncate(len);
    out
}

fn big_wheel(scale: usize) -> Archives {
    let (name, version) = ("bigwheel", "1.0");
    let files: Vec<FixtureFile> = (0..4u64)
        .map(|i| {
            FixtureFile::new(format!("bigwheel/_native{i}.so"), table_bytes(WHEEL_FILE_BYTES / scale, i + 7))
        })
        .collect();
    let filename = format!("{name}-{version}-cp312-cp312-manylinux_2_17_x86_64.whl");
    (name.into(), version.into(), vec![(filename, fixtures::wheel(name, version, &files))])
}

fn big_sdist(scale: usize) -> Archives {
    let (name, version) = ("bigsdist", "1.0");
    let count = SDIST_BYTES / scale / SDIST_FILE_BYTES;
    let files: Vec<FixtureFile> = (0..count)
        .map(|i| {
            let mut text = format!("# generated module {i}\n").into_bytes();
            while text.len() < SDIST_FILE_BYTES {
                let line =
                    format!("VALUE_{i}_{} = {}\n", text.len(), (text.len() * 2_654_435_761) % 1_000_003);
                text.extend_from_slice(line.as_bytes());
            }
            text.truncate(SDIST_FILE_BYTES);
            FixtureFile::new(format!("bigsdist/data/m{i:05}.py"), text)
        })
        .collect();
    (
        name.into(),
        version.into(),
        vec![(fixtures::sdist_filename(name, version), fixtures::sdist(name, version, &files))],
    )
}

/// A tar.gz of one file of zeros: refused at a limit, never held.
fn bomb(scale: usize) -> Archives {
    let zeros = BOMB_BYTES / scale as u64;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut header = [0u8; 512];
    header[..17].copy_from_slice(b"bomb-1.0/zeros.py");
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[124..136], zeros);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[148..156].fill(b' ');
    let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let block = vec![0u8; 1 << 20];
    let write = |gz: &mut flate2::write::GzEncoder<Vec<u8>>, data: &[u8]| {
        gz.write_all(data).expect("writing to memory cannot fail");
    };
    write(&mut gz, &header);
    for _ in 0..zeros / block.len() as u64 {
        write(&mut gz, &block);
    }
    write(&mut gz, &[0u8; 1024]);
    let bytes = gz.finish().expect("writing to memory cannot fail");
    ("bomb".into(), "1.0".into(), vec![(fixtures::sdist_filename("bomb", "1.0"), bytes)])
}

fn small(name: &str, version: &str) -> Archives {
    let files = [FixtureFile::new("m.py", "print('hello')\n")];
    (
        name.into(),
        version.into(),
        vec![(fixtures::sdist_filename(name, version), fixtures::sdist(name, version, &files))],
    )
}
