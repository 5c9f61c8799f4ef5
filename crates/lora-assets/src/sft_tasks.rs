//! The built-in generation tasks for supervised fine-tuning, read from the same pinned data
//! assets as the classification tasks.
//!
//! | task | asset | prompt | completion | examples | split |
//! |---|---|---|---|---|---|
//! | `bbc-headlines` | `bbc-news` | [`HEADLINE_INSTRUCTION`], a blank line, the article's first paragraph | the article's title | 2,225 | the `bbc-news` split |
//! | `movie-sentiment-instruct` | `movie-sentiment` | [`SENTIMENT_INSTRUCTION`], a blank line, the review snippet | `positive` or `negative` | 10,072 | the `movie-sentiment` split |
//!
//! The prompts are part of each experiment's definition, byte for byte:
//!
//! ```text
//! Write a headline for this news article.
//!
//! <first paragraph>
//! ```
//!
//! ```text
//! Is this review positive or negative?
//!
//! <review>
//! ```
//!
//! A BBC article file is its title line, a blank line and paragraphs separated by blank lines:
//! the title (whitespace collapsed) is the completion and the first paragraph (the lines after the title up
//! to the next blank line, whitespace collapsed to single spaces) is the prompt's text. Both
//! tasks list their examples in the order of the classification task they come from and split
//! them with the same seeded shuffle ([`SPLIT_SEED`], 80 / 10 / 10), so every article or review
//! lands in the same split as in `bbc-news` / `movie-sentiment`.

use std::path::Path;

use lora_data::DataError;
use lora_data::dataset::split_seeded;
use lora_data::sft::{SftExample, SftSplits};

use crate::AssetCache;
use crate::error::{AssetError, Result, io};
use crate::tasks::{HELD_OUT_FRACTION, SPLIT_SEED, read_movie_sentiment};

/// The instruction of `bbc-headlines` (followed by a blank line and the first paragraph).
pub const HEADLINE_INSTRUCTION: &str = "Write a headline for this news article.";
/// The instruction of `movie-sentiment-instruct` (followed by a blank line and the review).
pub const SENTIMENT_INSTRUCTION: &str = "Is this review positive or negative?";

/// The names of the built-in generation tasks.
pub const SFT_TASK_NAMES: [&str; 2] = ["bbc-headlines", "movie-sentiment-instruct"];

/// A built-in supervised fine-tuning (generation) task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinSftTask {
    /// Write a BBC News article's headline from its first paragraph.
    BbcHeadlines,
    /// Answer `positive` or `negative` to a movie-review snippet.
    MovieSentimentInstruct,
}

impl BuiltinSftTask {
    /// Looks a task up by name; an unknown name lists the generation tasks.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "bbc-headlines" => Ok(Self::BbcHeadlines),
            "movie-sentiment-instruct" => Ok(Self::MovieSentimentInstruct),
            _ => Err(AssetError::UnknownTask {
                name: name.to_string(),
                known: SFT_TASK_NAMES.to_vec(),
            }),
        }
    }

    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::BbcHeadlines => SFT_TASK_NAMES[0],
            Self::MovieSentimentInstruct => SFT_TASK_NAMES[1],
        }
    }

    /// The asset that holds the task's data.
    pub fn asset(self) -> &'static str {
        match self {
            Self::BbcHeadlines => "bbc-news",
            Self::MovieSentimentInstruct => "movie-sentiment",
        }
    }

    /// Fetches the task's asset into `cache` (if needed) and reads the split task.
    ///
    /// ```no_run
    /// use lora_assets::{AssetCache, BuiltinSftTask};
    ///
    /// let task = BuiltinSftTask::BbcHeadlines.load(&AssetCache::from_env())?;
    /// println!("{} train / {} dev / {} test", task.train.len(), task.dev.len(), task.test.len());
    /// # Ok::<(), lora_assets::AssetError>(())
    /// ```
    pub fn load(self, cache: &AssetCache) -> Result<SftSplits> {
        let asset = cache.fetch(self.asset())?;
        self.load_from(&asset.main)
    }

    /// Reads the task from its asset's main path (the BBC directory, or the snippet file).
    pub fn load_from(self, path: &Path) -> Result<SftSplits> {
        let examples = match self {
            Self::BbcHeadlines => read_bbc_headlines(path)?,
            Self::MovieSentimentInstruct => {
                let (examples, labels) = read_movie_sentiment(path)?;
                examples
                    .iter()
                    .map(|e| {
                        SftExample::prompt_completion(
                            sentiment_prompt(&e.text),
                            labels.name(e.label).unwrap_or_default(),
                        )
                    })
                    .collect()
            }
        };
        let (train, dev, test) =
            split_seeded(examples, HELD_OUT_FRACTION, HELD_OUT_FRACTION, SPLIT_SEED)?;
        Ok(SftSplits {
            name: self.name().to_string(),
            train,
            dev,
            test,
        })
    }
}

/// The `bbc-headlines` prompt for an article's first paragraph.
pub fn headline_prompt(paragraph: &str) -> String {
    format!("{HEADLINE_INSTRUCTION}\n\n{paragraph}")
}

/// The `movie-sentiment-instruct` prompt for a review.
pub fn sentiment_prompt(review: &str) -> String {
    format!("{SENTIMENT_INSTRUCTION}\n\n{review}")
}

/// Reads every BBC article (class directories and files in sorted order, as `bbc-news` does)
/// as a headline example.
pub fn read_bbc_headlines(dir: &Path) -> Result<Vec<SftExample>> {
    let mut classes: Vec<_> = std::fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut examples = Vec::new();
    for class_dir in classes {
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
            if text.trim().is_empty() {
                continue;
            }
            let (headline, paragraph) =
                headline_and_paragraph(&text).map_err(|(line, reason)| DataError::Malformed {
                    path: file.clone(),
                    line,
                    reason,
                })?;
            examples.push(SftExample::prompt_completion(
                headline_prompt(&paragraph),
                headline,
            ));
        }
    }
    if examples.is_empty() {
        return Err(AssetError::from(DataError::EmptyData {
            path: dir.to_path_buf(),
            detail: " (expected one sub-directory of .txt articles per class)".into(),
        }));
    }
    Ok(examples)
}

/// The title (first non-blank line) and the first paragraph of an article, or the line and
/// reason it cannot be read.
fn headline_and_paragraph(text: &str) -> Result<(String, String), (usize, String)> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .skip_while(|(_, l)| l.is_empty());
    let (title_line, title) = lines.next().ok_or((1, "no title line".to_string()))?;
    let paragraph: Vec<&str> = lines
        .skip_while(|(_, l)| l.is_empty())
        .take_while(|(_, l)| !l.is_empty())
        .map(|(_, l)| l)
        .collect();
    if paragraph.is_empty() {
        return Err((
            title_line,
            "the title is followed by no paragraph".to_string(),
        ));
    }
    let paragraph = paragraph
        .iter()
        .flat_map(|l| l.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((title, paragraph))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BuiltinTask;

    #[test]
    fn articles_split_into_title_and_first_paragraph() {
        let text =
            "\nAd sales boost Time Warner profit \n\nQuarterly  profits\nat US media.\n\nMore.\n";
        assert_eq!(
            headline_and_paragraph(text).unwrap(),
            (
                "Ad sales boost Time Warner profit".to_string(),
                "Quarterly profits at US media.".to_string()
            )
        );
        assert_eq!(headline_and_paragraph("Title only\n\n").unwrap_err().0, 1);
        let e = BuiltinSftTask::from_name("summaries")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bbc-headlines, movie-sentiment-instruct"), "{e}");
    }

    #[test]
    fn bbc_headlines_on_the_real_asset() {
        let cache = AssetCache::from_env();
        let task = BuiltinSftTask::BbcHeadlines.load(&cache).unwrap();
        assert_eq!(task.name, "bbc-headlines");
        assert_eq!(
            (task.train.len(), task.dev.len(), task.test.len()),
            (1_781, 222, 222)
        );
        // The first article of the corpus (business/001.txt) and where it lands.
        let all: Vec<&SftExample> = task
            .train
            .iter()
            .chain(&task.dev)
            .chain(&task.test)
            .collect();
        let first = SftExample::prompt_completion(
            headline_prompt(
                "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn (£600m) \
                 for the three months to December, from $639m year-earlier.",
            ),
            "Ad sales boost Time Warner profit",
        );
        assert!(all.contains(&&first));
        // The split is fixed: the same first training example on every run and machine.
        assert_eq!(
            task.train[0],
            SftExample::prompt_completion(
                "Write a headline for this news article.\n\nThe creator of Buffy the Vampire \
                 Slayer is to take on a new female superhero after signing up to write and \
                 direct the Wonder Woman movie.",
                "Buffy creator joins Wonder Woman"
            )
        );
        // Every article is in the split `bbc-news` puts it in (same order, same seed).
        let news = BuiltinTask::BbcNews.load(&cache).unwrap();
        for (sft, cls) in [
            (&task.train, &news.train),
            (&task.dev, &news.dev),
            (&task.test, &news.test),
        ] {
            for (g, c) in sft.iter().zip(cls) {
                let SftExample::PromptCompletion { completion, .. } = g else {
                    panic!("prompt/completion expected")
                };
                assert!(
                    c.text.starts_with(completion.as_str()),
                    "{completion} / {}",
                    c.text
                );
            }
        }
        // Deterministic.
        let again = BuiltinSftTask::BbcHeadlines.load(&cache).unwrap();
        assert_eq!(again, task);
        assert!(all.iter().all(|e| {
            matches!(e, SftExample::PromptCompletion { prompt, completion }
                if prompt.len() > HEADLINE_INSTRUCTION.len() + 2 && !completion.is_empty())
        }));
    }

    #[test]
    fn movie_sentiment_instruct_on_the_real_asset() {
        let cache = AssetCache::from_env();
        let task = BuiltinSftTask::MovieSentimentInstruct.load(&cache).unwrap();
        assert_eq!(
            (task.train.len(), task.dev.len(), task.test.len()),
            (8_058, 1_007, 1_007)
        );
        let cls = BuiltinTask::MovieSentiment.load(&cache).unwrap();
        for (sft, cls) in [
            (&task.train, &cls.train),
            (&task.dev, &cls.dev),
            (&task.test, &cls.test),
        ] {
            for (g, c) in sft.iter().zip(cls) {
                let expected = SftExample::prompt_completion(
                    format!("Is this review positive or negative?\n\n{}", c.text),
                    ["negative", "positive"][c.label],
                );
                assert_eq!(*g, expected);
            }
        }
        assert_eq!(
            task.train[0],
            SftExample::prompt_completion(
                "Is this review positive or negative?\n\nScarlet Diva has a voyeuristic tug, but \
                 all in all it's a lot less sensational than it wants to be.",
                "negative"
            )
        );
        let again = BuiltinSftTask::MovieSentimentInstruct.load(&cache).unwrap();
        assert_eq!(again.dev[0], task.dev[0]);
    }
}
