//! The error type shared by every loader, generator and transform in this crate.

use std::path::{Path, PathBuf};

/// Error from reading, parsing or generating data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("failed to read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file was read but its content breaks the format.
    ///
    /// `position` locates the problem, for example "byte 16 (image 3)" or "line 12, column 785".
    #[error("{}: {position}: {problem}", path.display())]
    Malformed {
        path: PathBuf,
        position: String,
        problem: String,
    },

    /// A caller-supplied argument is outside its valid range.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidArgument {
        name: &'static str,
        value: String,
        expected: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn malformed(
        path: &Path,
        position: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        DataError::Malformed {
            path: path.to_path_buf(),
            position: position.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn invalid(
        name: &'static str,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        DataError::InvalidArgument {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_message_names_file_and_position() {
        let error = DataError::malformed(Path::new("/tmp/x.idx"), "byte 16 (image 3)", "truncated");
        assert_eq!(
            error.to_string(),
            "/tmp/x.idx: byte 16 (image 3): truncated"
        );
    }

    #[test]
    fn io_message_names_file() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = DataError::io(Path::new("/tmp/missing"), source);
        assert_eq!(
            error.to_string(),
            "failed to read /tmp/missing: no such file"
        );
    }

    #[test]
    fn invalid_argument_message() {
        let error = DataError::invalid("std", -1.0, "a finite value >= 0");
        assert_eq!(
            error.to_string(),
            "invalid std = -1: expected a finite value >= 0"
        );
    }
}
