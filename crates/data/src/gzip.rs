//! Reading files that may or may not be gzip-compressed.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::DataError;

/// The first two bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file and decompresses it when it starts with the gzip magic bytes.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::io(path, source))?;
    match decompress_if_gzip(&bytes, path)? {
        Cow::Borrowed(_) => Ok(bytes),
        Cow::Owned(decompressed) => Ok(decompressed),
    }
}

/// Decompresses `bytes` when they start with the gzip magic bytes and borrows them otherwise.
///
/// The file name plays no part in the decision. `path` only labels errors.
pub(crate) fn decompress_if_gzip<'a>(
    bytes: &'a [u8],
    path: &Path,
) -> Result<Cow<'a, [u8]>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut decompressed = Vec::new();
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut decompressed)
        .map_err(|error| {
            DataError::malformed(
                path,
                "gzip stream",
                format!("corrupt gzip data ({error}); download the file again or check it with `gzip -t`"),
            )
        })?;
    Ok(Cow::Owned(decompressed))
}

/// Compresses `bytes` with gzip. Test helper for building compressed fixtures.
#[cfg(test)]
pub(crate) fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass_through() {
        let bytes = b"1,2,3\n";
        let result = decompress_if_gzip(bytes, Path::new("plain.csv")).unwrap();
        assert!(matches!(result, Cow::Borrowed(_)));
        assert_eq!(&*result, bytes);
    }

    #[test]
    fn gzip_detected_by_magic() {
        let original = b"0,0,0,7\n".to_vec();
        let compressed = compress(&original);
        let result = decompress_if_gzip(&compressed, Path::new("no_gz_suffix.csv")).unwrap();
        assert_eq!(&*result, &original[..]);
    }

    #[test]
    fn corrupt_gzip_names_file() {
        let mut compressed = compress(&[7u8; 1000]);
        compressed.truncate(compressed.len() / 2);
        let error = decompress_if_gzip(&compressed, Path::new("/data/broken.gz")).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, DataError::Malformed { .. }), "{message}");
        assert!(
            message.starts_with("/data/broken.gz: gzip stream: corrupt gzip data"),
            "{message}"
        );
    }
}
