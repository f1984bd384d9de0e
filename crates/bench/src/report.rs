//! Statistics, the Markdown report and its plots.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

/// Repeated measurements of one figure.
#[derive(Debug, Clone, Default)]
pub struct Series(pub Vec<f64>);

/// A row of a table: its label, how to read the figure from a result,
/// and the digits to show.
pub type Figure<T> = (&'static str, fn(&T) -> f64, usize);

impl Series {
    pub fn push(&mut self, x: f64) {
        self.0.push(x);
    }

    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The value a fraction `p` of the way up (nearest rank); NaN if empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// `median [min–max]` with the given precision.
    pub fn show(&self, digits: usize) -> String {
        if self.0.len() <= 1 {
            return format!("{:.*}", digits, self.median());
        }
        format!(
            "{:.*} [{:.*}–{:.*}]",
            digits,
            self.median(),
            digits,
            self.min(),
            digits,
            self.max()
        )
    }
}

/// A row comparing ours with theirs.
pub fn row(out: &mut String, label: &str, ours: &Series, theirs: &Series, digits: usize) {
    let ratio = ours.median() / theirs.median();
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {ratio:.3} |",
        ours.show(digits),
        theirs.show(digits)
    );
}

pub fn table_header(out: &mut String, first: &str) {
    let _ = writeln!(
        out,
        "| {first} | wandb-core-rs | wandb-core 0.31.0 | ours/theirs |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
}

/// A report's opening: its title, then the date and the machine.
pub fn heading(title: &str) -> String {
    format!(
        "# {title}\n\n- date: {}\n- machine: {}\n",
        crate::today(),
        machine()
    )
}

/// A description of this machine for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {mem_gib:.1} GiB RAM, Linux {}",
        kernel.trim()
    )
}

/// Seconds since the Unix epoch: what other processes can stamp too.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes a report into the output directory and shows it.
pub fn save(b: &crate::Bench, name: &str, md: &str) -> anyhow::Result<()> {
    let path = b.out_dir.join(name);
    std::fs::write(&path, md)?;
    println!("{md}\nwritten to {}", path.display());
    Ok(())
}

/// A line chart of two series (ours, theirs) against N (log scale), N
/// named by `x_label`.
pub fn plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    ns: &[u64],
    ours: &[f64],
    theirs: &[f64],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = *ns.iter().max().unwrap_or(&10) as f64 * 1.5;
    let x_min = *ns.iter().min().unwrap_or(&1) as f64 / 1.5;
    let y_max = ours.iter().chain(theirs).copied().fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max.max(1e-9))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    for (name, values, color) in [
        ("wandb-core-rs", ours, &BLUE),
        ("wandb-core 0.31.0", theirs, &RED),
    ] {
        let points: Vec<(f64, f64)> = ns
            .iter()
            .map(|n| *n as f64)
            .zip(values.iter().copied())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
