use std::io::Write;
#[test]
fn padded() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu(); h.set_size(2); h.set_cksum();
    b.append_data(&mut h, "a.py", &b"hi"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&t).unwrap();
    let mut g = enc.finish().unwrap();
    g.extend_from_slice(&[0u8; 100]);
    let r = dragonfly_flatten::flatten(&g, &Default::default());
    eprintln!("{:?}", r.map(|f| f.files.len()));
}
