//! Result tables: one row per run and a row of per-column medians, plus what the machine was
//! doing (a benchmark on a busy 2-core machine measures the other processes too).

/// One scenario's results: a row of numbers per run, under named columns.
pub(crate) struct Table {
    title: String,
    columns: Vec<&'static str>,
    /// Columns holding 1 or 0 for a per-run verdict, shown as yes or no.
    verdicts: Vec<&'static str>,
    rows: Vec<Vec<f64>>,
}

impl Table {
    pub(crate) fn new(title: impl Into<String>, columns: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            columns: columns.to_vec(),
            verdicts: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Marks `columns` as per-run verdicts (1 yes, 0 no; a median between the two is shown
    /// as a number, the runs being split).
    pub(crate) fn verdicts(mut self, columns: &[&'static str]) -> Table {
        self.verdicts = columns.to_vec();
        self
    }

    /// Adds a run's row (one value per column) and prints it at once, so a long scenario
    /// shows progress.
    pub(crate) fn push(&mut self, row: Vec<f64>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "a row has one value per column"
        );
        if self.rows.is_empty() {
            println!("\n== {}", self.title);
            println!(
                "{}",
                self.line(
                    "run",
                    &self
                        .columns
                        .iter()
                        .map(|c| (*c).to_owned())
                        .collect::<Vec<_>>()
                )
            );
        }
        let cells = self.cells(&row);
        println!("{}", self.line(&(self.rows.len() + 1).to_string(), &cells));
        self.rows.push(row);
    }

    /// The median of a column over the runs (NaN values, e.g. a missing baseline, ignored).
    pub(crate) fn median(&self, column: &str) -> f64 {
        let Some(i) = self.columns.iter().position(|c| *c == column) else {
            return f64::NAN;
        };
        let mut values: Vec<f64> = self
            .rows
            .iter()
            .map(|r| r[i])
            .filter(|v| !v.is_nan())
            .collect();
        median(&mut values)
    }

    /// The largest value of a column over the runs.
    pub(crate) fn max(&self, column: &str) -> f64 {
        let Some(i) = self.columns.iter().position(|c| *c == column) else {
            return f64::NAN;
        };
        self.rows.iter().map(|r| r[i]).fold(f64::NAN, f64::max)
    }

    /// Prints the title, the header and every row again: for tables whose runs were
    /// interleaved with another table's, before their `finish`.
    pub(crate) fn reprint(&self) {
        println!("\n== {}", self.title);
        let names: Vec<String> = self.columns.iter().map(|c| (*c).to_owned()).collect();
        println!("{}", self.line("run", &names));
        for (i, row) in self.rows.iter().enumerate() {
            println!("{}", self.line(&(i + 1).to_string(), &self.cells(row)));
        }
    }

    /// Prints the median row and one verdict line per goal.
    pub(crate) fn finish(&self, goals: &[(&str, bool)]) {
        let medians: Vec<f64> = self.columns.iter().map(|c| self.median(c)).collect();
        println!("{}", self.line("median", &self.cells(&medians)));
        for (goal, met) in goals {
            println!("   goal {goal}: {}", if *met { "MET" } else { "MISSED" });
        }
    }

    fn cells(&self, row: &[f64]) -> Vec<String> {
        row.iter()
            .zip(&self.columns)
            .map(|(&v, column)| {
                let verdict = self.verdicts.contains(column);
                if verdict && v == 1.0 {
                    "yes".to_owned()
                } else if verdict && v == 0.0 {
                    "no".to_owned()
                } else {
                    format_value(v)
                }
            })
            .collect()
    }

    fn line(&self, first: &str, cells: &[String]) -> String {
        let mut out = format!("{first:>7}");
        for (cell, column) in cells.iter().zip(&self.columns) {
            let width = column.len().max(9);
            out.push_str(&format!("  {cell:>width$}"));
        }
        out
    }
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

/// Big figures without decimals, small ones with enough to compare.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "-".to_owned()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v == 0.0 || v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        // Per-message costs (statements, Redis calls) are compared with goals like 0.02.
        format!("{v:.3}")
    }
}

/// Cores, load average and compilers running now: the context every figure needs.
pub(crate) fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("machine: {cores} cores, load average {}", load.join(" "));
    println!("herald: {}", crate::process::herald_description());
    let busy = heavy_processes();
    if !busy.is_empty() {
        println!(
            "WARNING: other heavy processes are running ({}); figures will be low",
            busy.join(", ")
        );
    }
}

/// Compilers and linkers running now (the usual neighbours on a development machine).
fn heavy_processes() -> Vec<String> {
    const HEAVY: [&str; 4] = ["rustc", "cc1", "ld", "clippy-driver"];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|comm| comm.trim().to_owned())
        .filter(|comm| HEAVY.contains(&comm.as_str()))
        .collect()
}
