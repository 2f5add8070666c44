//! `diagnose --bundle`: a gzip-compressed tar of files already in memory (already redacted by
//! the caller), written atomically with mode 0600. Every member is a plain file under one
//! top directory, with a fixed mode and the given time, so two bundles of the same content
//! are the same bytes.

use crate::fsx::{self, FsError};
use std::io::Write;
use std::path::Path;

/// Writes `files` (relative path, content) under `top/` in a `.tar.gz` at `path`.
pub fn write_tar_gz(
    path: &Path,
    top: &str,
    files: &[(String, Vec<u8>)],
    mtime: u64,
) -> Result<(), FsError> {
    let io = |source: std::io::Error| FsError::Io {
        path: path.to_owned(),
        source,
    };
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{top}/{name}"), data.as_slice())
            .map_err(io)?;
    }
    let mut gz = tar.into_inner().map_err(io)?;
    gz.flush().map_err(io)?;
    let bytes = gz.finish().map_err(io)?;
    fsx::write_atomic(path, &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trip_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("b.tar.gz");
        let files = vec![
            ("a.txt".to_owned(), b"hello".to_vec()),
            ("dir/b.json".to_owned(), b"{}".to_vec()),
        ];
        write_tar_gz(&p, "top", &files, 1_700_000_000).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap());
        let mut a = tar::Archive::new(gz);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            seen.push((e.path().unwrap().display().to_string(), s));
        }
        assert_eq!(
            seen,
            [
                ("top/a.txt".to_owned(), "hello".to_owned()),
                ("top/dir/b.json".to_owned(), "{}".to_owned())
            ]
        );
        let first = std::fs::read(&p).unwrap();
        write_tar_gz(&p, "top", &files, 1_700_000_000).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), first, "deterministic");
    }
}
