//! The error type of recd-train.
//!
//! One `thiserror` enum: bad input names the file and line so that a user can fix it;
//! the binary maps [`TrainError::BadInput`] / [`TrainError::InvalidParam`] to exit code 2
//! and the rest to 1.

use std::path::PathBuf;

/// Errors from loading data, splitting, training and evaluating.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record in an input file is malformed. `line` is 1-based.
    #[error("{path}:{line}: {message}")]
    BadInput {
        /// The file (or a description of the source).
        path: PathBuf,
        /// 1-based line number of the bad record.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A directory is not one of the known MovieLens layouts.
    #[error("{path}: not a MovieLens folder (expected u.data, ratings.dat or ratings.csv)")]
    UnknownLayout {
        /// The directory.
        path: PathBuf,
    },
    /// A parameter is out of range (factors = 0, fraction outside (0,1), ...).
    #[error("invalid parameter {name}: {message}")]
    InvalidParam {
        /// The parameter's name as the user spells it.
        name: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// There is nothing to learn from or to evaluate.
    #[error("empty data: {0}")]
    Empty(String),
    /// The thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad(path: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        Self::BadInput {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn param(name: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidParam {
            name,
            message: message.into(),
        }
    }
}
