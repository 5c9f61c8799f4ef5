//! Hugging Face model ids (`org/name[@revision]`): resolved through the `hf-hub` crate from the
//! local Hugging Face cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`; the `models--org--name/snapshots/<commit>/` layout), offline, and
//! downloaded into that cache when the network allows (`HF_HUB_OFFLINE=1` never downloads).

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{AssetError, Result};

/// The files a model directory is read from; the first group is required (one of them where
/// several are given), the rest are copied when present.
const REQUIRED: [&[&str]; 3] = [
    &["config.json"],
    &["tokenizer.json"],
    &["model.safetensors", "model.safetensors.index.json"],
];
const OPTIONAL: [&str; 4] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

/// A Hugging Face model id with an optional revision (`org/name@rev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit; `main` when absent.
    pub revision: String,
}

impl HubId {
    /// Parses `org/name` or `org/name@revision`; `None` for anything else (a path, an asset).
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => (repo, rev),
            Some(_) => return None,
            None => (spec, "main"),
        };
        let (org, name) = repo.split_once('/')?;
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (ok(org) && ok(name)).then(|| Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    fn hub_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }
}

/// The Hugging Face cache directory: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (as `huggingface_hub` decides).
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    Cache::from_env().path().clone()
}

/// The snapshot directory of `id` in the cache if it holds every required file.
fn cached_snapshot(cache: &Path, id: &HubId) -> Option<PathBuf> {
    let repo_dir = cache.join(id.hub_repo().folder_name());
    // A revision is a ref (refs/<name> holds the commit) or a commit itself.
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(&id.revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| id.revision.clone());
    let snapshot = repo_dir.join("snapshots").join(commit);
    let complete = REQUIRED
        .iter()
        .all(|any| any.iter().any(|f| snapshot.join(f).is_file()));
    complete.then_some(snapshot)
}

/// The local directory of model `id`: from the cache when it is complete there, else downloaded
/// into the cache (unless `HF_HUB_OFFLINE` is set).
pub fn resolve_hub_model(id: &HubId) -> Result<PathBuf> {
    let cache = hub_cache_dir();
    if let Some(dir) = cached_snapshot(&cache, id) {
        tracing::info!(model = %id.repo, revision = %id.revision, path = %dir.display(), "found in the Hugging Face cache");
        return Ok(dir);
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    let not_cached = |reason: String| AssetError::HubModel {
        repo: id.repo.clone(),
        revision: id.revision.clone(),
        cache: cache.clone(),
        reason,
    };
    if offline {
        return Err(not_cached(
            "it is not complete in the cache and HF_HUB_OFFLINE is set".into(),
        ));
    }
    download(&cache, id).map_err(not_cached)
}

/// Downloads the model's files into the cache with hf-hub's client.
fn download(cache: &Path, id: &HubId) -> std::result::Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(true)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.repo(id.hub_repo());
    let mut dir = None;
    for group in REQUIRED {
        let mut last_error = String::new();
        let mut found = false;
        for file in group {
            match repo.get(file) {
                Ok(path) => {
                    dir = path.parent().map(Path::to_path_buf);
                    found = true;
                    if *file == "model.safetensors.index.json" {
                        for shard in shards(&path)? {
                            repo.get(&shard)
                                .map_err(|e| format!("downloading {shard}: {e}"))?;
                        }
                    }
                    break;
                }
                Err(e) => last_error = format!("{file}: {e}"),
            }
        }
        if !found {
            return Err(format!(
                "downloading failed ({last_error}); is the Hub reachable? An offline machine \
                 needs the model in the cache already"
            ));
        }
    }
    for file in OPTIONAL {
        let _ = repo.get(file);
    }
    dir.ok_or_else(|| "the download produced no directory".into())
}

/// The shard file names a `model.safetensors.index.json` lists.
fn shards(index: &Path) -> std::result::Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| e.to_string())?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = json["weight_map"]
        .as_object()
        .ok_or("the index has no weight_map")?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_paths_do_not() {
        let id = HubId::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap();
        assert_eq!(id.repo, "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(id.revision, "main");
        assert_eq!(HubId::parse("org/name@v1.0").unwrap().revision, "v1.0");
        for not_an_id in [
            "minilm",
            "./org/name",
            "/abs/path",
            "a/b/c",
            "org/",
            "org/name@",
        ] {
            assert_eq!(HubId::parse(not_an_id), None, "{not_an_id}");
        }
    }

    #[test]
    fn a_complete_snapshot_is_found_by_ref_or_commit() {
        let cache = tempfile::tempdir().unwrap();
        let id = HubId::parse("org/tiny").unwrap();
        let repo = cache.path().join("models--org--tiny");
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(snap.join("tokenizer.json"), "{}").unwrap();
        assert_eq!(cached_snapshot(cache.path(), &id), None, "no weights yet");
        std::fs::write(snap.join("model.safetensors"), "").unwrap();
        assert_eq!(cached_snapshot(cache.path(), &id), Some(snap.clone()));
        let by_commit = HubId::parse("org/tiny@abc123").unwrap();
        assert_eq!(cached_snapshot(cache.path(), &by_commit), Some(snap));
    }
}
