//! Tables of runs grouped by recipe, method and setting, with seeds aggregated as
//! mean ± standard deviation.
//!
//! The standard deviation is the sample standard deviation (divided by n − 1); it is absent for
//! a single run. A metric a run lacks is left out of that cell's aggregate, and a cell no run
//! has is shown as a dash.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::runs::{Run, RunState};

/// A named metric: a built-in key or a dotted path into the result file.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Key given to `--columns`, also the CSV header stem.
    pub key: String,
    /// Header shown in Markdown and LaTeX, with its unit.
    pub label: String,
    /// Decimals shown.
    pub decimals: usize,
}

/// Built-in columns: (key, label, decimals). Units are documented in `docs/results.md`.
const BUILT_IN: &[(&str, &str, usize)] = &[
    ("accuracy", "accuracy (%)", 2),
    ("halting_steps", "halting steps", 2),
    ("steps_to_99", "steps to 99%", 0),
    ("extrapolation", "extrapolation acc. (%)", 2),
    ("flop_fraction", "FLOP fraction", 3),
    ("latency_p50_ms", "p50 latency (ms)", 3),
    ("latency_p99_ms", "p99 latency (ms)", 3),
    ("exit_shares", "exit share (%)", 1),
    ("wall_seconds", "wall time (s)", 1),
];

/// Default columns of a task family.
pub fn default_columns(task: &str) -> Vec<String> {
    let keys: &[&str] = match task {
        "parity" => &["accuracy", "halting_steps", "steps_to_99", "extrapolation"],
        "mnist" => &[
            "accuracy",
            "flop_fraction",
            "latency_p50_ms",
            "latency_p99_ms",
            "exit_shares",
        ],
        _ => &["accuracy", "halting_steps"],
    };
    keys.iter().map(|key| (*key).to_owned()).collect()
}

/// The split a task's headline numbers come from: `interpolation` (the training range of
/// non-zeros) when a parity run has one, else `test`.
pub(crate) fn main_split(run: &Run) -> &'static str {
    if run.number("evaluation.interpolation.accuracy").is_some() {
        "interpolation"
    } else {
        "test"
    }
}

/// Values of one column for one run; most columns give one value, `exit_shares` one per exit.
fn values(run: &Run, key: &str) -> Vec<Option<f64>> {
    let split = main_split(run);
    let at = |field: &str| run.number(&format!("evaluation.{split}.{field}"));
    let percent = |value: Option<f64>| value.map(|v| v * 100.0);
    match key {
        "accuracy" => vec![percent(at("accuracy"))],
        "halting_steps" => vec![at("mean_halting_step")],
        "flop_fraction" => vec![at("flop_fraction")],
        "latency_p50_ms" => vec![
            at("latency_ms.p50")
                .or_else(|| at("latency.p50_ms"))
                .or_else(|| at("exit_report.compute.batch1_exits.p50_ms")),
        ],
        "latency_p99_ms" => vec![
            at("latency_ms.p99")
                .or_else(|| at("latency.p99_ms"))
                .or_else(|| at("exit_report.compute.batch1_exits.p99_ms")),
        ],
        "extrapolation" => {
            let value = run.number("evaluation.extrapolation.accuracy").or_else(|| {
                (split == "interpolation")
                    .then(|| run.number("evaluation.test.accuracy"))
                    .flatten()
            });
            vec![percent(value)]
        }
        "steps_to_99" => vec![
            run.history
                .iter()
                .find(|record| record.validation_accuracy.is_some_and(|a| a >= 0.99))
                .map(|record| record.step as f64),
        ],
        "exit_shares" => match &run.result {
            Some(result) => match result.evaluation.get(split) {
                Some(evaluation) => evaluation
                    .halting_histogram
                    .shares()
                    .into_iter()
                    .map(|share| Some(share * 100.0))
                    .collect(),
                None => vec![None],
            },
            None => vec![None],
        },
        path => vec![run.number(path)],
    }
}

/// Mean, sample standard deviation and count of the values a group has for one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator); `None` when n = 1.
    pub std: Option<f64>,
    pub n: usize,
}

impl Aggregate {
    /// Aggregates the present values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Aggregate> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (squares / (n - 1) as f64).sqrt()
        });
        Some(Aggregate { mean, std, n })
    }
}

/// One row: a group of runs that differ only in seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub recipe: String,
    pub method: String,
    pub setting: String,
    /// Completed runs in the group.
    pub runs: usize,
    /// One cell per table column; `None` where no run has the metric.
    pub cells: Vec<Option<Aggregate>>,
}

/// A table of one task family.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub task: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

/// Builds one table per task family from completed runs; failed and unfinished runs are left
/// out. `columns` overrides the default columns of every task when given; a key that is not
/// built in is read as a dotted path into the result file, such as
/// `evaluation.test.max_halting_step`.
pub fn build_tables(runs: &[Run], columns: Option<&[String]>) -> Vec<Table> {
    let mut by_task: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in runs.iter().filter(|run| run.state == RunState::Completed) {
        by_task.entry(run.task.as_str()).or_default().push(run);
    }
    by_task
        .into_iter()
        .map(|(task, runs)| {
            let keys = columns
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| default_columns(task));
            build_table(task, &runs, &keys)
        })
        .collect()
}

fn build_table(task: &str, runs: &[&Run], keys: &[String]) -> Table {
    let mut groups: BTreeMap<(String, String, String), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        let key = (run.recipe.clone(), run.method.clone(), run.setting.clone());
        groups.entry(key).or_default().push(run);
    }
    // A vector-valued column is as wide as its widest run.
    let widths: Vec<usize> = keys
        .iter()
        .map(|key| {
            runs.iter()
                .map(|run| values(run, key).len())
                .max()
                .unwrap_or(1)
        })
        .collect();
    let mut columns = Vec::new();
    for (key, &width) in keys.iter().zip(&widths) {
        let (label, decimals) = BUILT_IN
            .iter()
            .find(|(name, _, _)| name == key)
            .map_or((key.as_str(), 3), |(_, label, decimals)| {
                (*label, *decimals)
            });
        if width == 1 {
            columns.push(Column {
                key: key.clone(),
                label: label.to_owned(),
                decimals,
            });
        } else {
            for index in 1..=width {
                columns.push(Column {
                    key: format!("{key}_{index}"),
                    label: format!("{label} {index}"),
                    decimals,
                });
            }
        }
    }
    let rows = groups
        .into_iter()
        .map(|((recipe, method, setting), members)| {
            let mut cells = Vec::new();
            for (key, &width) in keys.iter().zip(&widths) {
                let per_run: Vec<Vec<Option<f64>>> =
                    members.iter().map(|run| values(run, key)).collect();
                for index in 0..width {
                    let present: Vec<f64> = per_run
                        .iter()
                        .filter_map(|values| values.get(index).copied().flatten())
                        .collect();
                    cells.push(Aggregate::of(&present));
                }
            }
            Row {
                recipe,
                method,
                setting,
                runs: members.len(),
                cells,
            }
        })
        .collect();
    Table {
        task: task.to_owned(),
        columns,
        rows,
    }
}

/// Output formats of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Latex,
    Csv,
}

/// Renders tables: Markdown and LaTeX give one table per task, CSV one file with a `task`
/// column and the union of all columns.
pub fn render(tables: &[Table], format: Format) -> String {
    match format {
        Format::Markdown => tables.iter().map(markdown).collect::<Vec<_>>().join("\n"),
        Format::Latex => tables.iter().map(latex).collect::<Vec<_>>().join("\n"),
        Format::Csv => csv(tables),
    }
}

/// A cell as text: `mean ± std`, `mean` for one run, with `[k/n]` when only k of the group's
/// n runs have the metric; a dash when none has it.
fn cell_text(cell: Option<&Aggregate>, decimals: usize, runs: usize, plus_minus: &str) -> String {
    let Some(cell) = cell else {
        return "-".to_owned();
    };
    let mut text = format!("{:.*}", decimals, cell.mean);
    if let Some(std) = cell.std {
        let _ = write!(text, "{plus_minus}{:.*}", decimals, std);
    }
    if cell.n < runs {
        let _ = write!(text, " [{}/{}]", cell.n, runs);
    }
    text
}

fn markdown(table: &Table) -> String {
    let mut header = vec!["recipe", "method", "setting", "n"];
    header.extend(table.columns.iter().map(|column| column.label.as_str()));
    let mut out = format!("| {} |\n", header.join(" | "));
    let alignment: Vec<&str> = header
        .iter()
        .enumerate()
        .map(|(index, _)| if index < 3 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", alignment.join("|"));
    for row in &table.rows {
        let mut cells = vec![
            row.recipe.clone(),
            row.method.clone(),
            row.setting.clone(),
            row.runs.to_string(),
        ];
        for (cell, column) in row.cells.iter().zip(&table.columns) {
            cells.push(cell_text(cell.as_ref(), column.decimals, row.runs, " ± "));
        }
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Escapes the characters LaTeX treats specially in text.
fn latex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            _ => out.push(c),
        }
    }
    out
}

fn latex(table: &Table) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "% haltlab table: {}", latex_escape(&table.task));
    let spec = format!("lllr{}", "r".repeat(table.columns.len()));
    let _ = writeln!(out, "\\begin{{tabular}}{{{spec}}}");
    let _ = writeln!(out, "\\toprule");
    let mut header = vec![
        "recipe".to_owned(),
        "method".to_owned(),
        "setting".to_owned(),
        "$n$".to_owned(),
    ];
    header.extend(table.columns.iter().map(|c| latex_escape(&c.label)));
    let _ = writeln!(out, "{} \\\\", header.join(" & "));
    let _ = writeln!(out, "\\midrule");
    for row in &table.rows {
        let mut cells = vec![
            latex_escape(&row.recipe),
            latex_escape(&row.method),
            latex_escape(&row.setting),
            row.runs.to_string(),
        ];
        for (cell, column) in row.cells.iter().zip(&table.columns) {
            let text = cell_text(cell.as_ref(), column.decimals, row.runs, " \\pm ");
            cells.push(if cell.is_some() {
                // The `[k/n]` note stays outside math mode.
                match text.split_once(" [") {
                    Some((number, note)) => format!("${number}$ [{note}"),
                    None => format!("${text}$"),
                }
            } else {
                "--".to_owned()
            });
        }
        let _ = writeln!(out, "{} \\\\", cells.join(" & "));
    }
    let _ = writeln!(out, "\\bottomrule");
    let _ = writeln!(out, "\\end{{tabular}}");
    out
}

fn csv(tables: &[Table]) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for table in tables {
        for column in &table.columns {
            if !keys.contains(&column.key.as_str()) {
                keys.push(&column.key);
            }
        }
    }
    let mut writer = csv_writer();
    let mut header = vec![
        "task".to_owned(),
        "recipe".to_owned(),
        "method".to_owned(),
        "setting".to_owned(),
        "runs".to_owned(),
    ];
    for key in &keys {
        header.extend([
            format!("{key}_mean"),
            format!("{key}_std"),
            format!("{key}_n"),
        ]);
    }
    writer.push(header);
    for table in tables {
        for row in &table.rows {
            let mut record = vec![
                table.task.clone(),
                row.recipe.clone(),
                row.method.clone(),
                row.setting.clone(),
                row.runs.to_string(),
            ];
            for key in &keys {
                let cell = table
                    .columns
                    .iter()
                    .position(|column| column.key == *key)
                    .and_then(|index| row.cells[index]);
                match cell {
                    Some(cell) => record.extend([
                        cell.mean.to_string(),
                        cell.std.map(|std| std.to_string()).unwrap_or_default(),
                        cell.n.to_string(),
                    ]),
                    None => record.extend([String::new(), String::new(), "0".to_owned()]),
                }
            }
            writer.push(record);
        }
    }
    writer.finish()
}

/// Collects CSV records in memory through the `csv` crate, which quotes fields as RFC 4180
/// requires.
struct CsvText {
    writer: ::csv::Writer<Vec<u8>>,
}

fn csv_writer() -> CsvText {
    CsvText {
        writer: ::csv::Writer::from_writer(Vec::new()),
    }
}

impl CsvText {
    fn push(&mut self, record: Vec<String>) {
        // Writing to memory cannot fail for I/O reasons, and every record is plain text.
        let _ = self.writer.write_record(&record);
    }

    fn finish(self) -> String {
        let bytes = self.writer.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::metrics::Histogram;
    use crate::results::{EpochRecord, Evaluation, RunResult, RunStatus, SCHEMA_VERSION};

    fn run(method: &str, seed: u64, accuracy: f64, extrapolation: Option<f64>) -> Run {
        let mut evaluation = BTreeMap::new();
        let main = Evaluation {
            samples: 100,
            accuracy,
            ..Evaluation::default()
        }
        .with_histogram(Histogram {
            counts: vec![1, seed, 0],
        });
        if let Some(extrapolation) = extrapolation {
            evaluation.insert("interpolation".to_owned(), main);
            evaluation.insert(
                "test".to_owned(),
                Evaluation {
                    accuracy: extrapolation,
                    ..Evaluation::default()
                },
            );
        } else {
            evaluation.insert("test".to_owned(), main);
        }
        let result = RunResult {
            schema_version: SCHEMA_VERSION,
            status: RunStatus::Completed,
            recipe_name: format!("parity_{method}-seed{seed}"),
            recipe_path: String::new(),
            recipe: serde_json::json!({
                "seed": seed,
                "parity": {"length": 8, "train_nonzeros": [1, 4], "eval_nonzeros": [1, 8]},
                "halting": {"method": method}
            }),
            haltlab_version: String::new(),
            burn_version: String::new(),
            backend: "flex".into(),
            device: String::new(),
            act_kernel: None,
            seed,
            git_commit: None,
            started_at: String::new(),
            wall_seconds: 1.0,
            training_seconds: 1.0,
            history: vec![
                EpochRecord {
                    epoch: 1,
                    step: 100,
                    validation_accuracy: Some(0.9),
                    ..EpochRecord::default()
                },
                EpochRecord {
                    epoch: 2,
                    step: 200,
                    validation_accuracy: Some(0.995),
                    ..EpochRecord::default()
                },
            ],
            evaluation,
        };
        Run::from_result(PathBuf::from(format!("{method}{seed}")), result)
    }

    #[test]
    fn seeds_aggregate_to_mean_sample_std_and_n() {
        let runs = vec![
            run("act", 1, 0.90, Some(0.5)),
            run("act", 2, 0.94, None),
            run("act", 3, 0.98, Some(0.7)),
            run("pondernet", 1, 0.80, None),
        ];
        let tables = build_tables(&runs, None);
        assert_eq!(tables.len(), 1);
        let table = &tables[0];
        assert_eq!(table.rows.len(), 2);
        let act = &table.rows[0];
        assert_eq!((act.method.as_str(), act.runs), ("act", 3));
        assert_eq!(act.recipe, "parity_act");
        let accuracy = act.cells[0].unwrap();
        assert!((accuracy.mean - 94.0).abs() < 1e-9);
        // Sample std of 90, 94, 98: sqrt((16 + 0 + 16) / 2) = 4.
        assert!((accuracy.std.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(accuracy.n, 3);
        // Extrapolation exists for two of three runs: mean 60, std sqrt(200) ≈ 14.14.
        let extrapolation = act.cells[3].unwrap();
        assert_eq!(extrapolation.n, 2);
        assert!((extrapolation.mean - 60.0).abs() < 1e-9);
        assert!((extrapolation.std.unwrap() - 200f64.sqrt()).abs() < 1e-9);
        // Steps to 99 %: epoch 2 ends at step 200 in every run.
        assert_eq!(act.cells[2].unwrap().mean, 200.0);
        let pondernet = &table.rows[1];
        assert_eq!(pondernet.cells[0].unwrap().std, None);
        assert_eq!(pondernet.cells[3], None);

        let markdown = render(&tables, Format::Markdown);
        assert!(markdown.contains("| 94.00 ± 4.00 |"), "{markdown}");
        assert!(markdown.contains("60.00 ± 14.14 [2/3]"), "{markdown}");
        let pondernet_line = markdown.lines().find(|l| l.contains("pondernet")).unwrap();
        assert!(pondernet_line.ends_with("| - |"), "{pondernet_line}");
    }

    #[test]
    fn failed_runs_and_missing_columns_do_not_crash() {
        let mut failed = run("act", 4, 0.1, None);
        failed.state = RunState::Failed {
            reason: "NaN".into(),
        };
        let runs = vec![run("act", 1, 0.5, None), failed];
        let columns = vec![
            "accuracy".to_owned(),
            "evaluation.test.no_such_key".to_owned(),
        ];
        let tables = build_tables(&runs, Some(&columns));
        assert_eq!(tables[0].rows[0].runs, 1);
        assert_eq!(tables[0].rows[0].cells[1], None);
        let markdown = render(&tables, Format::Markdown);
        assert!(markdown.contains("| 50.00 | - |"), "{markdown}");
    }

    #[test]
    fn vector_columns_expand_per_exit() {
        let runs = vec![run("act", 1, 0.5, None), run("act", 3, 0.5, None)];
        let columns = vec!["exit_shares".to_owned()];
        let table = &build_tables(&runs, Some(&columns))[0];
        let keys: Vec<&str> = table.columns.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["exit_shares_1", "exit_shares_2", "exit_shares_3"]);
        // Shares 50/50/0 (seed 1) and 25/75/0 (seed 3).
        assert!((table.rows[0].cells[0].unwrap().mean - 37.5).abs() < 1e-9);
    }

    #[test]
    fn csv_round_trips_through_a_csv_reader() {
        let runs = vec![
            run("act", 1, 0.9, Some(0.5)),
            run("act", 2, 0.7, Some(0.6)),
            run("pondernet", 1, 0.8, None),
        ];
        let tables = build_tables(&runs, None);
        let text = render(&tables, Format::Csv);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
        // The setting contains a comma, so it must have been quoted.
        assert_eq!(&records[0][column("setting")], "len 8, k 1-4 / eval 1-8");
        let mean: f64 = records[0][column("accuracy_mean")].parse().unwrap();
        assert!((mean - 80.0).abs() < 1e-9);
        let std: f64 = records[0][column("accuracy_std")].parse().unwrap();
        assert!((std - 200f64.sqrt()).abs() < 1e-9);
        assert_eq!(&records[0][column("accuracy_n")], "2");
        assert_eq!(&records[1][column("extrapolation_mean")], "");
        assert_eq!(&records[1][column("extrapolation_n")], "0");
    }

    /// Checks that LaTeX text is a booktabs tabular whose rows all have as many cells as its
    /// column specification, with balanced braces and math delimiters.
    fn check_latex(text: &str) {
        let begin = text.find("\\begin{tabular}{").expect("no tabular");
        let spec_start = begin + "\\begin{tabular}{".len();
        let spec_end = spec_start + text[spec_start..].find('}').unwrap();
        let columns = text[spec_start..spec_end].len();
        assert!(text.contains("\\toprule") && text.contains("\\midrule"));
        assert!(text.trim_end().ends_with("\\end{tabular}"));
        let body = &text[spec_end + 1..text.find("\\end{tabular}").unwrap()];
        let mut rows = 0;
        for line in body.lines().map(str::trim) {
            if line.is_empty() || line.ends_with("rule") {
                continue;
            }
            let row = line.strip_suffix("\\\\").expect("row without \\\\");
            let cells = row.replace("\\&", "").matches('&').count() + 1;
            assert_eq!(cells, columns, "row {line:?}");
            let unescaped_dollars = row.replace("\\$", "").matches('$').count();
            assert_eq!(unescaped_dollars % 2, 0, "unbalanced math in {line:?}");
            let stripped = row.replace("\\{", "").replace("\\}", "");
            assert_eq!(stripped.matches('{').count(), stripped.matches('}').count());
            assert!(
                !row.replace("\\%", "").contains('%'),
                "unescaped % in {line:?}"
            );
            rows += 1;
        }
        assert!(rows >= 2, "header and at least one row expected");
    }

    #[test]
    fn latex_output_is_a_well_formed_booktabs_table() {
        let runs = vec![
            run("act", 1, 0.9, Some(0.5)),
            run("act", 2, 0.7, None),
            run("pondernet", 1, 0.8, None),
        ];
        let text = render(&build_tables(&runs, None), Format::Latex);
        check_latex(&text);
        assert!(text.contains("parity\\_act"), "{text}");
        assert!(text.contains("$80.00 \\pm 14.14$"), "{text}");
        assert!(text.contains("accuracy (\\%)"), "{text}");
    }
}
