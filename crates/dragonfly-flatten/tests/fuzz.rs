//! Mutation fuzzing: valid archives of every format, corrupted at random
//! (bit flips, overwrites, truncation, splices), must flatten to a typed
//! error or to files within the limits, never a panic or a hang.
//!
//! `cargo test` runs a few hundred cases; `cargo xtask fuzz` runs many more
//! (`DRAGONFLY_FUZZ_ITERATIONS`, seed in `DRAGONFLY_FUZZ_SEED`).

use std::io::Write;

use dragonfly_flatten::{Limits, flatten, flatten_filtered};

fn sample_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("pkg-1.0/setup.py".into(), b"from setuptools import setup\nsetup(name='pkg')\n".repeat(3)),
        ("pkg-1.0/pkg/__init__.py".into(), b"def f(x):\n    return x * 2\n".repeat(20)),
        ("pkg-1.0/pkg/data.bin".into(), (0..3000u32).map(|i| (i * 7 % 251) as u8).collect()),
        ("pkg-1.0/README.md".into(), b"# pkg\n".to_vec()),
    ]
}

fn tar_bytes() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in sample_files() {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn seeds() -> Vec<Vec<u8>> {
    let tar = tar_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    let mut xz = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    xz.write_all(&tar).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (i, (path, data)) in sample_files().into_iter().enumerate() {
        let method =
            if i % 2 == 0 { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        zip.start_file(path, zip::write::SimpleFileOptions::default().compression_method(method)).unwrap();
        zip.write_all(&data).unwrap();
    }
    vec![
        tar,
        gz.finish().unwrap(),
        bz.finish().unwrap(),
        xz.finish().unwrap(),
        zip.finish().unwrap().into_inner(),
    ]
}

fn mutate(rng: &mut fastrand::Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        if data.is_empty() {
            break;
        }
        match rng.u8(0..5) {
            0 => {
                let i = rng.usize(..data.len());
                data[i] ^= 1 << rng.u8(0..8);
            }
            1 => {
                let i = rng.usize(..data.len());
                let n = rng.usize(1..=8).min(data.len() - i);
                for b in &mut data[i..i + n] {
                    *b = [0x00, 0xff, 0x7f, 0x80][rng.usize(..4)];
                }
            }
            2 => data.truncate(rng.usize(..data.len())),
            3 => {
                let other = &pool[rng.usize(..pool.len())];
                let from = rng.usize(..other.len());
                let n = rng.usize(1..=64).min(other.len() - from);
                let at = rng.usize(..=data.len());
                data.splice(at..at, other[from..from + n].iter().copied());
            }
            _ => {
                let i = rng.usize(..data.len());
                let n = rng.usize(1..=32).min(data.len() - i);
                data.drain(i..i + n);
            }
        }
    }
    data
}

#[test]
fn mutated_archives_never_panic() {
    let iterations: u64 =
        std::env::var("DRAGONFLY_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let seed: u64 = std::env::var("DRAGONFLY_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let pool = seeds();
    for seed_input in &pool {
        let flat = flatten(seed_input, &Limits::default()).expect("unmutated seeds flatten");
        assert_eq!(flat.files.len(), sample_files().len());
    }
    let limits = Limits {
        max_total_bytes: 64 << 10,
        max_file_bytes: 16 << 10,
        max_entries: 64,
        max_ratio: 50,
        max_header_bytes: 4096,
    };
    let (mut ok, mut errors) = (0u64, 0u64);
    for i in 0..iterations {
        let input = mutate(&mut rng, &pool[(i as usize) % pool.len()], &pool);
        let keep_py = |path: &str| path.ends_with(".py");
        let result =
            if i % 3 == 0 { flatten_filtered(&input, &limits, &keep_py) } else { flatten(&input, &limits) };
        match result {
            Ok(flat) => {
                ok += 1;
                let total: usize = flat.files.iter().map(|f| f.data.len()).sum();
                assert!(total as u64 <= limits.max_total_bytes, "case {i}: {total} bytes");
                assert!(flat.files.iter().all(|f| f.data.len() as u64 <= limits.max_file_bytes), "case {i}");
                assert!(flat.files.len() as u64 <= limits.max_entries, "case {i}");
            }
            Err(err) => {
                errors += 1;
                assert!(!err.to_string().is_empty());
            }
        }
    }
    eprintln!("fuzz: {iterations} cases from seed {seed}: {ok} flattened, {errors} typed errors");
    assert!(errors > 0, "mutations never produced an error: the mutator is broken");
}
