//! Digit images stored as CSV: one image per line, `height * width` pixel values, then the label.

use std::path::Path;

use super::{DIGIT_CLASSES, ImageSet};
use crate::DataError;
use crate::gzip::{decompress_if_gzip, read_file};

/// Image shape and pixel scale of a CSV digit file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CsvLayout {
    pub height: usize,
    pub width: usize,
    /// Maximum valid pixel value. Pixels are divided by it to scale them to [0, 1].
    pub max_value: f32,
}

impl CsvLayout {
    /// 28x28 MNIST images with intensities 0–255.
    pub const MNIST: CsvLayout = CsvLayout {
        height: 28,
        width: 28,
        max_value: 255.0,
    };

    /// 8x8 UCI optical digits, where each value counts the set pixels (0–16) in a 4x4 block.
    pub const UCI_DIGITS: CsvLayout = CsvLayout {
        height: 8,
        width: 8,
        max_value: 16.0,
    };

    /// Returns the number of pixel columns, or an error for an unusable layout.
    fn pixel_columns(&self) -> Result<usize, DataError> {
        let shape = || format!("{}x{}", self.height, self.width);
        if self.height == 0 || self.width == 0 {
            return Err(DataError::invalid(
                "CSV layout",
                shape(),
                "height and width of at least 1",
            ));
        }
        if !(self.max_value.is_finite() && self.max_value > 0.0) {
            return Err(DataError::invalid(
                "CSV max_value",
                self.max_value,
                "a finite value > 0",
            ));
        }
        self.height
            .checked_mul(self.width)
            .filter(|&size| size < usize::MAX)
            .ok_or_else(|| {
                DataError::invalid("CSV layout", shape(), "a pixel count that fits in usize")
            })
    }
}

/// Reads a CSV digit file, plain or gzip-compressed (detected from its first bytes).
pub fn load_csv(path: &Path, layout: CsvLayout) -> Result<ImageSet, DataError> {
    parse_csv(&read_file(path)?, path, layout)
}

/// Parses CSV digit data, plain or gzip-compressed, into an [`ImageSet`] scaled to [0, 1].
///
/// Each line contains `height * width` comma-separated pixel values in `0..=max_value`, then an
/// integer label 0–9. There is no header line. Blank lines may follow the last image but not
/// precede it. `path` is used only in error messages.
pub fn parse_csv(bytes: &[u8], path: &Path, layout: CsvLayout) -> Result<ImageSet, DataError> {
    let pixel_columns = layout.pixel_columns()?;
    let columns = pixel_columns + 1;
    let bytes = decompress_if_gzip(bytes, path)?;

    let lines: Vec<&[u8]> = bytes
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .collect();
    let Some(last) = lines.iter().rposition(|line| !line.trim_ascii().is_empty()) else {
        return Err(DataError::malformed(
            path,
            "line 1",
            format!("no images found; expected lines of {columns} comma-separated values"),
        ));
    };

    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (index, line) in lines[..=last].iter().enumerate() {
        let line_number = index + 1;
        let found = line.split(|&byte| byte == b',').count();
        if found != columns {
            return Err(DataError::malformed(
                path,
                format!("line {line_number}"),
                format!(
                    "wrong column count: expected {columns} values ({pixel_columns} pixels and a label), found {found}"
                ),
            ));
        }
        for (column_index, field) in line.split(|&byte| byte == b',').enumerate() {
            let position = || format!("line {line_number}, column {}", column_index + 1);
            let value = parse_number(field).ok_or_else(|| {
                let header_hint = if line_number == 1 {
                    "; the file must not have a header line"
                } else {
                    ""
                };
                DataError::malformed(
                    path,
                    position(),
                    format!("value {} is not a number{header_hint}", quote(field)),
                )
            })?;
            if column_index < pixel_columns {
                if !(0.0..=layout.max_value).contains(&value) {
                    return Err(DataError::malformed(
                        path,
                        position(),
                        format!(
                            "pixel value {value} is out of range; expected 0 to {}",
                            layout.max_value
                        ),
                    ));
                }
                pixels.push(value / layout.max_value);
            } else {
                labels.push(parse_label(value).ok_or_else(|| {
                    DataError::malformed(
                        path,
                        position(),
                        format!("label {value} at line {line_number}; labels must be integers 0-9"),
                    )
                })?);
            }
        }
    }
    ImageSet::new(layout.height, layout.width, pixels, labels)
}

/// Parses one field as a finite number, ignoring surrounding whitespace.
fn parse_number(field: &[u8]) -> Option<f32> {
    let text = std::str::from_utf8(field).ok()?.trim();
    text.parse::<f32>().ok().filter(|value| value.is_finite())
}

/// Converts an integral value in 0..=9 to a label.
fn parse_label(value: f32) -> Option<u8> {
    let in_range = value.fract() == 0.0 && (0.0..DIGIT_CLASSES as f32).contains(&value);
    in_range.then_some(value as u8)
}

/// Quotes a field for an error message, shortened to 24 characters.
fn quote(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    let mut shortened: String = text.chars().take(24).collect();
    if shortened.len() < text.len() {
        shortened.push_str("...");
    }
    format!("{shortened:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gzip::compress;
    use proptest::prelude::*;

    /// A 2x2 layout with values 0–10, small enough to write cases by hand.
    const TINY: CsvLayout = CsvLayout {
        height: 2,
        width: 2,
        max_value: 10.0,
    };

    fn parse(text: &str) -> Result<ImageSet, DataError> {
        parse_csv(text.as_bytes(), Path::new("/d/digits.csv"), TINY)
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn valid_csv_parses() {
        let set = parse("0,5,10,2,7\r\n1,1,1,1,0\n\n\n").unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!((set.height, set.width, set.classes), (2, 2, 10));
        assert_eq!(set.labels, vec![7, 0]);
        assert_eq!(&set.pixels[..4], &[0.0, 0.5, 1.0, 0.2]);
    }

    #[test]
    fn gzip_csv_parses() {
        let compressed = compress(b"0,5,10,2,7\n");
        let set = parse_csv(&compressed, Path::new("d.csv"), TINY).unwrap();
        assert_eq!(set.labels, vec![7]);
    }

    #[test]
    fn decimal_values_accepted() {
        let set = parse(" 0.0, 2.5 ,10,0,3.0\n").unwrap();
        assert_eq!(set.labels, vec![3]);
        assert_eq!(set.pixels[1], 0.25);
    }

    #[test]
    fn wrong_column_count_rejected() {
        assert_eq!(
            message("0,0,0,0,1\n0,0,0,1\n"),
            "/d/digits.csv: line 2: wrong column count: expected 5 values (4 pixels and a label), found 4"
        );
        assert!(
            message("0,0,0,0,1,2\n").ends_with("expected 5 values (4 pixels and a label), found 6")
        );
    }

    #[test]
    fn interior_blank_line_rejected() {
        assert!(
            message("0,0,0,0,1\n\n0,0,0,0,1\n")
                .starts_with("/d/digits.csv: line 2: wrong column count")
        );
    }

    #[test]
    fn non_number_rejected() {
        assert_eq!(
            message("0,0,0,0,1\n0,x1,0,0,1\n"),
            "/d/digits.csv: line 2, column 2: value \"x1\" is not a number"
        );
        assert!(message("0,0,0,nan,1\n").contains("column 4: value \"nan\" is not a number"));
        assert!(message("0,0,0,0,\n").contains("column 5: value \"\" is not a number"));
    }

    #[test]
    fn header_line_gets_hint() {
        let text = "p1,p2,p3,p4,label\n0,0,0,0,1\n";
        assert!(message(text).ends_with("is not a number; the file must not have a header line"));
    }

    #[test]
    fn label_out_of_range_rejected() {
        assert_eq!(
            message("0,0,0,0,11\n"),
            "/d/digits.csv: line 1, column 5: label 11 at line 1; labels must be integers 0-9"
        );
        assert!(message("0,0,0,0,-1\n").contains("label -1 at line 1"));
        assert!(message("0,0,0,0,2.5\n").contains("label 2.5 at line 1"));
    }

    #[test]
    fn pixel_out_of_range_rejected() {
        assert_eq!(
            message("0,0,11,0,1\n"),
            "/d/digits.csv: line 1, column 3: pixel value 11 is out of range; expected 0 to 10"
        );
        assert!(message("-1,0,0,0,1\n").contains("column 1: pixel value -1 is out of range"));
    }

    #[test]
    fn empty_input_rejected() {
        assert!(
            message("")
                .ends_with("line 1: no images found; expected lines of 5 comma-separated values")
        );
        assert!(message("\n \n").contains("no images found"));
    }

    #[test]
    fn invalid_layout_rejected() {
        let layouts = [
            CsvLayout { height: 0, ..TINY },
            CsvLayout {
                max_value: 0.0,
                ..TINY
            },
            CsvLayout {
                max_value: f32::NAN,
                ..TINY
            },
            CsvLayout {
                height: usize::MAX,
                width: 2,
                ..TINY
            },
        ];
        for layout in layouts {
            let error = parse_csv(b"0,0,0,0,1\n", Path::new("d"), layout).unwrap_err();
            assert!(
                matches!(error, DataError::InvalidArgument { .. }),
                "{layout:?}: {error}"
            );
        }
    }

    #[test]
    fn long_field_quoted_short() {
        let field = "y".repeat(100);
        let text = format!("0,{field},0,0,1\n");
        assert!(
            message(&text).contains(&format!("value \"{}...\" is not a number", "y".repeat(24)))
        );
    }

    proptest! {
        #[test]
        fn csv_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            for layout in [TINY, CsvLayout::UCI_DIGITS, CsvLayout::MNIST] {
                if let Ok(set) = parse_csv(&bytes, Path::new("fuzz.csv"), layout) {
                    prop_assert!(set.check().is_ok());
                }
            }
        }

        #[test]
        fn csv_text_never_panics(text in "[0-9,.\\- \r\n]{0,300}") {
            if let Ok(set) = parse_csv(text.as_bytes(), Path::new("fuzz.csv"), TINY) {
                prop_assert!(set.pixels.iter().all(|value| (0.0..=1.0).contains(value)));
                prop_assert!(set.labels.iter().all(|&label| label <= 9));
            }
        }

        #[test]
        fn mutated_csv_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
            compressed in any::<bool>(),
        ) {
            let valid = b"0,5,10,2,7\n1,1,1,1,0\n3,3,3,3,9\n".to_vec();
            let mut bytes = if compressed { compress(&valid) } else { valid };
            for (offset, value) in flips {
                let length = bytes.len();
                bytes[offset % length] = value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(set) = parse_csv(&bytes, Path::new("fuzz.csv"), TINY) {
                prop_assert!(set.check().is_ok());
            }
        }
    }
}
