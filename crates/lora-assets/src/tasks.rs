//! The built-in classification tasks, read from the pinned data assets (the generation tasks
//! built on the same data are in [`crate::sft_tasks`]).
//!
//! | task | asset | classes | examples | split |
//! |---|---|---|---|---|
//! | `movie-sentiment` | `movie-sentiment` (Hutto & Gilbert 2014) | `negative`, `positive` (score < 0 / > 0; \|score\| < 0.5 dropped) | 10,072 | 80 / 10 / 10, seed [`SPLIT_SEED`] |
//! | `bbc-news` | `bbc-news` | `business`, `entertainment`, `politics`, `sports`, `tech` | 2,225 | 80 / 10 / 10, seed [`SPLIT_SEED`] |
//!
//! The split is a seeded shuffle ([`SeededRng`](lora_data::SeededRng), SplitMix64) of the examples
//! in file order, then cut into train, dev and test: it is the same on every machine and in
//! every version of this crate (changing it would change every reported number).

use std::path::Path;

use lora_data::DataError;
use lora_data::dataset::{Example, LabelVocab, TaskSplits, split_seeded};

use crate::AssetCache;
use crate::error::{AssetError, Result, io};

/// The seed of every built-in task's split.
pub const SPLIT_SEED: u64 = 2014;
/// The fraction of each built-in task held out for dev, and again for test.
pub const HELD_OUT_FRACTION: f64 = 0.1;
/// Movie-review snippets whose absolute sentiment score is below this are neutral and dropped.
pub const NEUTRAL_BELOW: f64 = 0.5;

/// A built-in classification task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTask {
    /// Binary sentiment of movie-review snippets.
    MovieSentiment,
    /// Five-way topic classification of BBC News articles.
    BbcNews,
}

/// The names of the built-in tasks.
pub const TASK_NAMES: [&str; 2] = ["movie-sentiment", "bbc-news"];

impl BuiltinTask {
    /// Looks a task up by name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "movie-sentiment" => Ok(Self::MovieSentiment),
            "bbc-news" => Ok(Self::BbcNews),
            _ => Err(AssetError::UnknownTask {
                name: name.to_string(),
                known: TASK_NAMES.to_vec(),
            }),
        }
    }

    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::MovieSentiment => TASK_NAMES[0],
            Self::BbcNews => TASK_NAMES[1],
        }
    }

    /// The asset that holds the task's data (the same name).
    pub fn asset(self) -> &'static str {
        self.name()
    }

    /// Fetches the task's asset into `cache` (if needed) and reads the split task.
    ///
    /// ```no_run
    /// use lora_assets::{AssetCache, BuiltinTask};
    ///
    /// let task = BuiltinTask::MovieSentiment.load(&AssetCache::from_env())?;
    /// assert_eq!(task.labels.names(), ["negative", "positive"]);
    /// println!("{} train / {} dev / {} test", task.train.len(), task.dev.len(), task.test.len());
    /// # Ok::<(), lora_assets::AssetError>(())
    /// ```
    pub fn load(self, cache: &AssetCache) -> Result<TaskSplits> {
        let asset = cache.fetch(self.asset())?;
        self.load_from(&asset.main)
    }

    /// Reads the task from its asset's main path (the snippet file, or the BBC directory).
    pub fn load_from(self, path: &Path) -> Result<TaskSplits> {
        let (examples, labels) = match self {
            Self::MovieSentiment => read_movie_sentiment(path)?,
            Self::BbcNews => read_bbc_news(path)?,
        };
        let (train, dev, test) =
            split_seeded(examples, HELD_OUT_FRACTION, HELD_OUT_FRACTION, SPLIT_SEED)?;
        Ok(TaskSplits {
            name: self.name().to_string(),
            train,
            dev,
            test,
            labels,
        })
    }
}

/// Reads `movieReviewSnippets_GroundTruth.txt` (`id<TAB>score<TAB>text`), dropping snippets with
/// `|score| < 0.5` and labelling the rest `negative` (score < 0) or `positive`.
pub fn read_movie_sentiment(path: &Path) -> Result<(Vec<Example>, LabelVocab)> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let text = String::from_utf8_lossy(&bytes);
    let labels = LabelVocab::new(["negative", "positive"])?;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(_id), Some(score), Some(snippet)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(AssetError::from(DataError::Malformed {
                path: path.to_path_buf(),
                line: line_no,
                reason: "expected id<TAB>score<TAB>text".into(),
            }));
        };
        let score: f64 = score.trim().parse().map_err(|_| DataError::Malformed {
            path: path.to_path_buf(),
            line: line_no,
            reason: format!("score '{score}' is not a number"),
        })?;
        if score.abs() < NEUTRAL_BELOW {
            continue;
        }
        examples.push(Example {
            text: snippet.trim().to_string(),
            text_pair: None,
            label: usize::from(score > 0.0),
        });
    }
    if examples.is_empty() {
        return Err(AssetError::from(DataError::EmptyData {
            path: path.to_path_buf(),
            detail: " after dropping neutral snippets".into(),
        }));
    }
    Ok((examples, labels))
}

/// Reads the BBC News directory: one sub-directory per class (sorted by name), one UTF-8 article
/// per `.txt` file (the title line and body, whitespace collapsed).
pub fn read_bbc_news(dir: &Path) -> Result<(Vec<Example>, LabelVocab)> {
    let mut classes: Vec<String> = std::fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let labels = LabelVocab::new(classes.clone()).map_err(|_| DataError::EmptyData {
        path: dir.to_path_buf(),
        detail: " (expected one sub-directory per class)".into(),
    })?;
    let mut examples = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        let mut files: Vec<_> = std::fs::read_dir(&class_dir)
            .map_err(io("listing", &class_dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).map_err(io("reading", &file))?;
            let text = String::from_utf8_lossy(&bytes);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if !text.is_empty() {
                examples.push(Example {
                    text,
                    text_pair: None,
                    label,
                });
            }
        }
    }
    Ok((examples, labels))
}
