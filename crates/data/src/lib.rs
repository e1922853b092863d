//! Data sources for haltlab experiments: the synthetic parity task, MNIST-style digit images
//! (IDX and CSV), seeded train/validation/test splits and seeded distribution shifts.
//!
//! Everything here is plain Rust over `Vec<f32>` and `Vec<u8>`. Loaders, generators and
//! transforms return an error instead of panicking on a bad file or argument, and the parsers are
//! fuzz-tested for this.

pub mod error;
mod gzip;
pub mod images;
pub mod parity;
pub mod shift;

pub use error::DataError;

/// Allocates `len` copies of `value`, or returns `InvalidArgument` naming `name` when the
/// allocation cannot be made, so that huge requested sizes fail without a panic or an abort.
pub(crate) fn try_filled_vec<T: Clone>(
    len: Option<usize>,
    value: T,
    name: &'static str,
    requested: impl ToString,
) -> Result<Vec<T>, DataError> {
    let too_large = || {
        DataError::invalid(
            name,
            requested.to_string(),
            "a size whose buffer fits in memory",
        )
    };
    let len = len.ok_or_else(too_large)?;
    let mut values = Vec::new();
    values.try_reserve_exact(len).map_err(|_| too_large())?;
    values.resize(len, value);
    Ok(values)
}
