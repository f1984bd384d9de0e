//! A line chart of one metric, one line per run.
//!
//! Points are the series' buckets (means), so drawing costs the same for
//! a thousand rows or a million. The window on x follows the zoom and pan
//! of the app; the y range is that of the points inside it (log-y drops
//! values that are not positive, as W&B's charts do).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize as _};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType};

use super::app::XAxis;
use crate::runlog::Series;

/// Run colours: the named ANSI colours, which every terminal has (a
/// 16-colour one included), in an order that keeps neighbours apart.
pub const PALETTE: [Color; 10] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::Red,
    Color::LightCyan,
    Color::LightMagenta,
    Color::LightYellow,
    Color::LightGreen,
];

pub fn color(i: usize) -> Color {
    PALETTE[i % PALETTE.len()]
}

/// How the x axis is windowed.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub x_axis: XAxis,
    pub log_y: bool,
    pub zoom: u32,
    pub pan: u32,
}

/// One run's line: its series, the run's start (for the time axis) and colour.
pub struct Trace<'a> {
    pub series: &'a Series,
    pub start: f64,
    pub color: Color,
}

/// Compact numbers for axis labels and values: `0.0123`, `1.5e+06`.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn fmt_x(x: f64, axis: XAxis) -> String {
    match axis {
        XAxis::Step => fmt_num(x.round()),
        XAxis::Time => {
            let s = x.max(0.0) as u64;
            if s >= 3600 {
                format!("{}h{:02}m", s / 3600, s / 60 % 60)
            } else if s >= 60 {
                format!("{}m{:02}s", s / 60, s % 60)
            } else {
                format!("{s}s")
            }
        }
    }
}

/// Draws the chart of `title` in `area`.
pub fn draw(frame: &mut Frame<'_>, area: Rect, title: &str, lines: &[Trace<'_>], view: View) {
    let mut points: Vec<Vec<(f64, f64)>> = lines
        .iter()
        .map(|l| {
            l.series
                .buckets()
                .iter()
                .filter_map(|b| {
                    let x = match view.x_axis {
                        XAxis::Step => b.step,
                        XAxis::Time => b.time - l.start,
                    };
                    let y = b.mean();
                    if view.log_y {
                        (y > 0.0).then(|| (x, y.log10()))
                    } else {
                        Some((x, y))
                    }
                })
                .collect()
        })
        .collect();
    let (lo, hi) = points
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| {
            (lo.min(*x), hi.max(*x))
        });
    let (x0, x1) = if lo <= hi {
        window(lo, hi, view)
    } else {
        (0.0, 1.0)
    };
    for p in &mut points {
        p.retain(|(x, _)| *x >= x0 && *x <= x1);
    }
    let (ylo, yhi) = points
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| {
            (lo.min(*y), hi.max(*y))
        });
    let (y0, y1) = if ylo <= yhi {
        // A flat line gets a band around it, not a range of 1e-12 whose
        // labels do not fit.
        let pad = if yhi > ylo {
            (yhi - ylo) * 0.05
        } else {
            (yhi.abs() * 0.1).max(0.5)
        };
        (ylo - pad, yhi + pad)
    } else {
        (0.0, 1.0)
    };
    let last = lines
        .first()
        .filter(|_| lines.len() == 1)
        .and_then(|l| l.series.last());
    let heading = match last {
        Some(v) => format!(" {title} {} ", fmt_num(v)),
        None => format!(" {title} "),
    };
    let datasets: Vec<Dataset<'_>> = points
        .iter()
        .zip(lines)
        .map(|(p, l)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(l.color))
                .data(p)
        })
        .collect();
    let ylabel = |y: f64| {
        if view.log_y {
            fmt_num(10f64.powf(y))
        } else {
            fmt_num(y)
        }
    };
    let chart = Chart::new(datasets)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(Color::DarkGray))
                .title(Line::from(heading).bold()),
        )
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .labels([fmt_x(x0, view.x_axis), fmt_x(x1, view.x_axis)])
                .style(Style::default().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([ylabel(y0), ylabel(y1)])
                .style(Style::default().fg(Color::DarkGray)),
        );
    frame.render_widget(chart, area);
}

/// The x window for a zoom level and pan: the last 1/2^zoom of the range,
/// moved back `pan` windows.
fn window(lo: f64, hi: f64, view: View) -> (f64, f64) {
    if hi <= lo {
        return (lo - 0.5, hi + 0.5);
    }
    let span = (hi - lo) / f64::from(1u32 << view.zoom.min(16));
    let end = hi - span * f64::from(view.pan);
    (end - span, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_num(0.012345), "0.0123");
        assert_eq!(fmt_num(1.5e6), "1.50e6");
        assert_eq!(fmt_num(-2.0e-5), "-2.00e-5");
        assert_eq!(fmt_x(3725.0, XAxis::Time), "1h02m");
        assert_eq!(fmt_x(75.0, XAxis::Time), "1m15s");
    }

    #[test]
    fn zoom_shows_the_tail_and_pan_moves_back() {
        let v = |zoom, pan| View {
            x_axis: XAxis::Step,
            log_y: false,
            zoom,
            pan,
        };
        assert_eq!(window(0.0, 100.0, v(0, 0)), (0.0, 100.0));
        assert_eq!(window(0.0, 100.0, v(1, 0)), (50.0, 100.0));
        assert_eq!(window(0.0, 100.0, v(2, 1)), (50.0, 75.0));
    }
}
