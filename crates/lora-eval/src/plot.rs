//! SVG plots drawn with `plotters`: accuracy against LoRA rank with error bars, and training
//! loss curves.

use plotters::prelude::*;

use crate::error::{EvalError, Result};

/// One line of a plot: a label and its points.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// `(x, y, error)` points; `error` is drawn as a ± bar when positive.
    pub points: Vec<(f64, f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Write {
        path: "plot.svg".into(),
        reason: e.to_string(),
    }
}

/// A line plot with optional error bars, as an SVG document. With `log2_x`, x is plotted on a
/// base-2 log scale (ranks 1, 2, 4, …).
pub fn line_plot_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log2_x: bool,
) -> Result<String> {
    let all: Vec<(f64, f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Err(EvalError::Config(format!("nothing to plot for '{title}'")));
    }
    let tx = |x: f64| if log2_x { x.log2() } else { x };
    let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(tx(p.0)), b.max(tx(p.0)))
    });
    let (mut y0, mut y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.1 - p.2.max(0.0)), b.max(p.1 + p.2.max(0.0)))
    });
    if x1 <= x0 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    (y0, y1) = (y0 - pad, y1 + pad);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let x_format = |x: &f64| {
            if log2_x {
                format!("{}", 2f64.powf(*x).round())
            } else {
                format!("{x}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&x_format)
            .draw()
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), p.1)).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if s.points.len() <= 64 {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                    )
                    .map_err(plot_err)?;
            }
            chart
                .draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                    ErrorBar::new_vertical(
                        tx(p.0),
                        p.1 - p.2,
                        p.1,
                        p.1 + p.2,
                        color.stroke_width(1),
                        8,
                    )
                }))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Smooths a loss curve with a trailing moving average of `window` steps.
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut sum = 0.0;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            sum += v;
            if i >= window {
                sum -= values[i - window];
            }
            sum / (i + 1).min(window) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_the_labels() {
        let svg = line_plot_svg(
            "accuracy vs rank",
            "r",
            "accuracy",
            &[Series {
                label: "alpha = r".into(),
                points: vec![(1.0, 0.7, 0.01), (8.0, 0.8, 0.02), (64.0, 0.79, 0.0)],
            }],
            true,
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("accuracy vs rank") && svg.contains("alpha = r"));
        assert!(line_plot_svg("empty", "x", "y", &[], false).is_err());
        assert_eq!(moving_average(&[1.0, 3.0, 5.0], 2), [1.0, 2.0, 4.0]);
    }
}
