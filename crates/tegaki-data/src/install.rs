//! Putting verified dataset files into the data directory: from a local
//! folder (`--from DIR`, no network) or, with feature `download`, from the
//! official mirrors.
//!
//! Files are written to `NAME.part`, verified, and only then renamed to
//! `NAME`; any failure removes the `.part`, so the data directory never holds
//! an unverified file under its real name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cifar::{
    CIFAR10_BATCH_RECORDS, CIFAR10_RECORD_BYTES, extract_cifar_archive, read_cifar_batch,
};
use crate::error::DataError;
use crate::idx::{GZIP_MAGIC, read_idx_file};
use crate::kinds::{CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, DatasetKind, RemoteFile, Split};

/// Receives progress of long copies and downloads (the library never prints).
pub trait Progress {
    /// A transfer of `label` begins; `total` bytes if known.
    fn start(&mut self, label: &str, total: Option<u64>);
    /// `bytes` more bytes were transferred.
    fn advance(&mut self, bytes: u64);
    /// The transfer ended (successfully or not).
    fn finish(&mut self);
}

/// Ignores progress.
impl Progress for () {
    fn start(&mut self, _: &str, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// Where it now is.
    pub path: PathBuf,
    /// How it was checked, e.g. `sha256 ok (440fcabf…)`.
    pub verification: String,
}

/// Lower-case hex of `bytes` (sha2 0.11 no longer formats digests itself).
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// SHA-256 (hex) and length of everything `reader` yields.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((to_hex(&hasher.finalize()), total))
}

/// `path` with `.part` appended to its file name.
pub fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// Where a failed stream went wrong: reading the source or writing the target.
pub(crate) enum StreamError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` into `part` while hashing; returns (sha256 hex, bytes).
pub(crate) fn stream_to_part(
    mut reader: impl Read,
    part: &Path,
    progress: &mut dyn Progress,
) -> Result<(String, u64), StreamError> {
    let mut out = File::create(part).map_err(StreamError::Write)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(StreamError::Write)?;
        total += n as u64;
        progress.advance(n as u64);
    }
    out.sync_all().map_err(StreamError::Write)?;
    Ok((to_hex(&hasher.finalize()), total))
}

/// Copies `src` to `dest` through `dest.part`, keeping it only if its SHA-256 is `expected`.
fn copy_verified(
    src: &Path,
    dest: &Path,
    expected: &str,
    progress: &mut dyn Progress,
) -> Result<(), DataError> {
    let file = File::open(src).map_err(|e| DataError::io(src, e))?;
    let size = file.metadata().ok().map(|m| m.len());
    let part = part_path(dest);
    progress.start(&src.display().to_string(), size);
    let result = stream_to_part(file, &part, progress);
    progress.finish();
    let outcome = match result {
        Err(StreamError::Read(e)) => Err(DataError::io(src, e)),
        Err(StreamError::Write(e)) => Err(DataError::io(&part, e)),
        Ok((found, _)) if found != expected => Err(DataError::Checksum {
            source_name: src.display().to_string(),
            expected: expected.to_string(),
            found,
        }),
        Ok(_) => std::fs::rename(&part, dest).map_err(|e| DataError::io(dest, e)),
    };
    if outcome.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    outcome
}

/// Copies `src` to `dest` through `dest.part` without a checksum (the caller
/// checked the content).
fn copy_plain(src: &Path, dest: &Path) -> Result<(), DataError> {
    let part = part_path(dest);
    let result = std::fs::copy(src, &part)
        .map_err(|e| DataError::io(src, e))
        .and_then(|_| std::fs::rename(&part, dest).map_err(|e| DataError::io(dest, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn starts_with_gzip(path: &Path) -> Result<bool, DataError> {
    let mut head = [0u8; 2];
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let n = crate::idx::read_up_to(&mut f, &mut head).map_err(|e| DataError::io(path, e))?;
    Ok(n == 2 && head == GZIP_MAGIC)
}

/// The decoded IDX dimensions a published MNIST-family file must have.
fn idx_dims(kind: DatasetKind, file_index: usize) -> Vec<usize> {
    let split = if file_index < 2 {
        Split::Train
    } else {
        Split::Test
    };
    let n = kind.len(split);
    let (_, h, w) = kind.shape();
    if file_index.is_multiple_of(2) {
        vec![n, h, w]
    } else {
        vec![n]
    }
}

fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// True if `path` exists and hashes to `sha256`.
fn already_verified(path: &Path, sha256: &str) -> bool {
    File::open(path)
        .ok()
        .and_then(|f| sha256_reader(io::BufReader::new(f)).ok())
        .is_some_and(|(h, _)| h == sha256)
}

fn cifar_batches_present(dir: &Path) -> bool {
    let expected = (CIFAR10_BATCH_RECORDS * CIFAR10_RECORD_BYTES) as u64;
    CIFAR10_TRAIN_BATCHES
        .iter()
        .chain([&CIFAR10_TEST_BATCH])
        .all(|n| std::fs::metadata(dir.join(n)).is_ok_and(|m| m.len() == expected))
}

/// Installs `kind` into `data_dir/<kind.dir_name()>` from the local folder
/// `src`, with the same verification as a download. MNIST-family files may be
/// `.gz` (checked against the published SHA-256) or gunzipped (no checksum
/// is published for the decoded bytes, so the IDX header, shape and length
/// are checked instead; the returned note says so). CIFAR-10 takes
/// `cifar-10-binary.tar.gz` (SHA-256) or the six extracted `*.bin` batches
/// (sizes and labels checked). Files already present and valid are kept.
pub fn install_from_dir(
    kind: DatasetKind,
    src: &Path,
    data_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Vec<Installed>, DataError> {
    let dest_dir = data_dir.join(kind.dir_name());
    std::fs::create_dir_all(&dest_dir).map_err(|e| DataError::io(&dest_dir, e))?;
    if kind == DatasetKind::Cifar10 {
        return install_cifar_from_dir(src, &dest_dir, progress);
    }
    let mut done = Vec::new();
    for (i, file) in kind.files().iter().enumerate() {
        let dest = dest_dir.join(file.name);
        if already_verified(&dest, file.sha256) {
            done.push(Installed {
                path: dest,
                verification: format!("already present, sha256 ok ({}…)", short(file.sha256)),
            });
            continue;
        }
        let gz = src.join(file.name);
        let raw = src.join(file.gunzipped_name());
        if gz.is_file() || (raw.is_file() && starts_with_gzip(&raw)?) {
            let from = if gz.is_file() { gz } else { raw };
            copy_verified(&from, &dest, file.sha256, progress)?;
            done.push(Installed {
                path: dest,
                verification: format!("sha256 ok ({}…)", short(file.sha256)),
            });
        } else if raw.is_file() {
            let idx = read_idx_file(&raw)?;
            let want = idx_dims(kind, i);
            if idx.dims != want {
                return Err(DataError::InvalidConfig {
                    field: raw.display().to_string(),
                    message: format!(
                        "decoded shape {:?}, expected {want:?} for {}",
                        idx.dims,
                        kind.display_name()
                    ),
                });
            }
            let dest = dest_dir.join(file.gunzipped_name());
            copy_plain(&raw, &dest)?;
            done.push(Installed {
                path: dest,
                verification: format!(
                    "gunzipped copy: no published checksum for decoded bytes, checked IDX shape {want:?} and length instead"
                ),
            });
        } else {
            return Err(DataError::Missing {
                dataset: kind.display_name(),
                dir: src.to_path_buf(),
                looked_for: format!("{}[.gz]", file.gunzipped_name()),
                command: kind.download_command(),
                local_kind: "IDX files",
            });
        }
    }
    Ok(done)
}

fn install_cifar_from_dir(
    src: &Path,
    dest_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Vec<Installed>, DataError> {
    if cifar_batches_present(dest_dir) {
        return Ok(vec![Installed {
            path: dest_dir.to_path_buf(),
            verification: "already present (six batches of the right size)".into(),
        }]);
    }
    let archive = &DatasetKind::Cifar10.files()[0];
    let tarball = src.join(archive.name);
    if tarball.is_file() {
        let dest = dest_dir.join(archive.name);
        copy_verified(&tarball, &dest, archive.sha256, progress)?;
        return extract_and_report(&dest, dest_dir, archive);
    }
    let batch_dir = [src.to_path_buf(), src.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join(CIFAR10_TEST_BATCH).is_file());
    let Some(batch_dir) = batch_dir else {
        return Err(DataError::Missing {
            dataset: "CIFAR-10",
            dir: src.to_path_buf(),
            looked_for: format!(
                "{} or {CIFAR10_TEST_BATCH} and data_batch_[1-5].bin",
                archive.name
            ),
            command: DatasetKind::Cifar10.download_command(),
            local_kind: "cifar-10-binary.tar.gz or extracted *.bin batch files",
        });
    };
    let mut done = Vec::new();
    for name in CIFAR10_TRAIN_BATCHES.iter().chain([&CIFAR10_TEST_BATCH]) {
        let from = batch_dir.join(name);
        let f = File::open(&from).map_err(|e| DataError::io(&from, e))?;
        let (_, labels) = read_cifar_batch(io::BufReader::new(f), &from)?;
        if labels.len() != CIFAR10_BATCH_RECORDS {
            return Err(DataError::BadCifar {
                path: from,
                message: format!("{} records, expected {CIFAR10_BATCH_RECORDS}", labels.len()),
            });
        }
        let dest = dest_dir.join(name);
        copy_plain(&from, &dest)?;
        done.push(Installed {
            path: dest,
            verification:
                "extracted batch: no published checksum, checked 10000 records and labels instead"
                    .into(),
        });
    }
    Ok(done)
}

/// Extracts a verified CIFAR-10 archive next to itself, then deletes it.
fn extract_and_report(
    archive_path: &Path,
    dest_dir: &Path,
    archive: &RemoteFile,
) -> Result<Vec<Installed>, DataError> {
    let f = File::open(archive_path).map_err(|e| DataError::io(archive_path, e))?;
    let names = extract_cifar_archive(io::BufReader::new(f), archive_path, dest_dir)?;
    let _ = std::fs::remove_file(archive_path);
    Ok(names
        .into_iter()
        .map(|n| Installed {
            path: dest_dir.join(n),
            verification: format!(
                "from {} (sha256 ok, {}…)",
                archive.name,
                short(archive.sha256)
            ),
        })
        .collect())
}

#[cfg(feature = "download")]
pub use http::{download, download_file};

#[cfg(feature = "download")]
mod http {
    use super::*;
    use std::time::Duration;

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    /// Fetches one URL into `part`; on any failure the `.part` is removed and
    /// the reason returned.
    fn fetch(
        agent: &ureq::Agent,
        url: &str,
        file: &RemoteFile,
        part: &Path,
        progress: &mut dyn Progress,
    ) -> Result<(), String> {
        let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
        let total = response.body().content_length().or(Some(file.size));
        progress.start(url, total);
        let result = stream_to_part(response.body_mut().as_reader(), part, progress);
        progress.finish();
        let outcome = match result {
            Err(StreamError::Read(e)) => Err(format!("connection broken: {e}")),
            Err(StreamError::Write(e)) => Err(format!("cannot write {}: {e}", part.display())),
            Ok((found, _)) if found != file.sha256 => Err(format!(
                "SHA-256 mismatch: expected {}, got {found}; the file was discarded",
                file.sha256
            )),
            Ok(_) => Ok(()),
        };
        if outcome.is_err() {
            let _ = std::fs::remove_file(part);
        }
        outcome
    }

    /// Downloads `file` to `dest`, trying `urls` in order; only a file whose
    /// SHA-256 matches is renamed into place. The error lists every URL with
    /// its failure (connection, HTTP status or both checksums).
    pub fn download_file(
        urls: &[String],
        file: &RemoteFile,
        dest: &Path,
        dataset: &'static str,
        progress: &mut dyn Progress,
    ) -> Result<(), DataError> {
        let agent = agent();
        let part = part_path(dest);
        let mut attempts = Vec::new();
        for url in urls {
            match fetch(&agent, url, file, &part, progress) {
                Ok(()) => {
                    return std::fs::rename(&part, dest).map_err(|e| {
                        let _ = std::fs::remove_file(&part);
                        DataError::io(dest, e)
                    });
                }
                Err(reason) => attempts.push(format!("  {url}: {reason}")),
            }
        }
        Err(DataError::Download {
            file: file.name.to_string(),
            dataset,
            sha256: file.sha256,
            attempts,
        })
    }

    /// Downloads `kind` from its mirrors into `data_dir/<kind.dir_name()>`,
    /// skipping files already present with the right checksum (CIFAR-10's
    /// archive is extracted and then deleted).
    pub fn download(
        kind: DatasetKind,
        data_dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Installed>, DataError> {
        let dest_dir = data_dir.join(kind.dir_name());
        std::fs::create_dir_all(&dest_dir).map_err(|e| DataError::io(&dest_dir, e))?;
        if kind == DatasetKind::Cifar10 && cifar_batches_present(&dest_dir) {
            return Ok(vec![Installed {
                path: dest_dir,
                verification: "already present (six batches of the right size)".into(),
            }]);
        }
        let mut done = Vec::new();
        for file in kind.files() {
            let dest = dest_dir.join(file.name);
            if already_verified(&dest, file.sha256) {
                done.push(Installed {
                    path: dest,
                    verification: format!("already present, sha256 ok ({}…)", short(file.sha256)),
                });
                continue;
            }
            let urls: Vec<String> = kind
                .mirrors()
                .iter()
                .map(|m| format!("{m}{}", file.name))
                .collect();
            download_file(&urls, file, &dest, kind.name(), progress)?;
            if kind == DatasetKind::Cifar10 {
                done.extend(extract_and_report(&dest, &dest_dir, file)?);
            } else {
                done.push(Installed {
                    path: dest,
                    verification: format!("sha256 ok ({}…)", short(file.sha256)),
                });
            }
        }
        Ok(done)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::io::{BufRead, BufReader};
        use std::net::TcpListener;

        const FILE: RemoteFile = RemoteFile {
            name: "x.gz",
            sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            size: 5,
        };

        #[test]
        fn closed_port_gives_clear_error_and_no_file() {
            // bind then drop: the port is (almost certainly) closed afterwards
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("x.gz");
            let url = format!("http://127.0.0.1:{port}/x.gz");
            let e = download_file(std::slice::from_ref(&url), &FILE, &dest, "mnist", &mut ())
                .unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&url), "{msg}");
            assert!(
                msg.contains("cargo xtask download mnist --from DIR"),
                "{msg}"
            );
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }

        #[test]
        fn wrong_bytes_name_url_and_both_checksums_and_leave_no_file() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let mut stream = stream;
                stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    )
                    .unwrap();
            });
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("x.gz");
            let url = format!("http://127.0.0.1:{port}/x.gz");
            let e = download_file(std::slice::from_ref(&url), &FILE, &dest, "mnist", &mut ())
                .unwrap_err();
            server.join().unwrap();
            let msg = e.to_string();
            assert!(msg.contains(&url), "{msg}");
            assert!(msg.contains(FILE.sha256), "{msg}");
            assert!(msg.contains(&sha256_hex(b"hello")), "{msg}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::{write_idx, write_idx_gz};

    #[test]
    fn hex_and_sha256() {
        assert_eq!(to_hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_reader(&b"abc"[..]).unwrap().1, 3);
    }

    /// A fake dataset kind is not possible, so these tests use MNIST's names
    /// with small generated files: checksums then cannot match, which is
    /// exactly the failure path; the success path runs in tests/real_mnist.rs.
    #[test]
    fn from_dir_mismatch_leaves_nothing_and_names_both_checksums() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let f = File::create(src.path().join("train-images-idx3-ubyte.gz")).unwrap();
        write_idx_gz(f, &[1, 28, 28], &[0; 784]).unwrap();
        let e = install_from_dir(DatasetKind::Mnist, src.path(), data.path(), &mut ()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("SHA-256 mismatch: expected 440fcabf"), "{msg}");
        assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
        let left: Vec<_> = std::fs::read_dir(data.path().join("mnist"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn from_dir_gunzipped_checks_shape() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let f = File::create(src.path().join("train-images-idx3-ubyte")).unwrap();
        write_idx(f, &[2, 28, 28], &[0; 2 * 784]).unwrap();
        let e =
            install_from_dir(DatasetKind::Kmnist, src.path(), data.path(), &mut ()).unwrap_err();
        assert!(
            e.to_string()
                .contains("decoded shape [2, 28, 28], expected [60000, 28, 28]"),
            "{e}"
        );
        let e =
            install_from_dir(DatasetKind::Kmnist, data.path(), data.path(), &mut ()).unwrap_err();
        assert!(
            e.to_string()
                .contains("looked for train-images-idx3-ubyte[.gz]"),
            "{e}"
        );
    }

    #[test]
    fn from_dir_cifar_batches_and_archive_errors() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let e =
            install_from_dir(DatasetKind::Cifar10, src.path(), data.path(), &mut ()).unwrap_err();
        assert!(e.to_string().contains("cifar-10-binary.tar.gz"), "{e}");
        // a fake archive fails its checksum and leaves nothing behind
        std::fs::write(src.path().join("cifar-10-binary.tar.gz"), b"not really").unwrap();
        let e =
            install_from_dir(DatasetKind::Cifar10, src.path(), data.path(), &mut ()).unwrap_err();
        assert!(e.to_string().contains("expected c4a38c50"), "{e}");
        assert_eq!(
            std::fs::read_dir(data.path().join("cifar10"))
                .unwrap()
                .count(),
            0
        );
        // extracted batches with a bad one
        std::fs::remove_file(src.path().join("cifar-10-binary.tar.gz")).unwrap();
        let batch: Vec<u8> = (0..CIFAR10_BATCH_RECORDS)
            .flat_map(|i| std::iter::once((i % 10) as u8).chain(std::iter::repeat_n(7u8, 3072)))
            .collect();
        for n in CIFAR10_TRAIN_BATCHES.iter().chain([&CIFAR10_TEST_BATCH]) {
            std::fs::write(src.path().join(n), &batch).unwrap();
        }
        let done =
            install_from_dir(DatasetKind::Cifar10, src.path(), data.path(), &mut ()).unwrap();
        assert_eq!(done.len(), 6);
        let test = crate::load(DatasetKind::Cifar10, Split::Test, data.path()).unwrap();
        assert_eq!(test.len(), 10_000);
        assert_eq!(test.label_histogram(), vec![1000; 10]);
    }
}
