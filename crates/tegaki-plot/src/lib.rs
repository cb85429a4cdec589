//! Charts and image grids for tegaki's reports, as PNG and SVG.
//!
//! plotters draws with an embedded font (DejaVu Sans Mono, see
//! `assets/DejaVu-LICENSE.txt`) through `ab_glyph`, so nothing depends on
//! system font libraries; PNGs are encoded with the `image` crate. Every file
//! is written atomically.

use std::path::{Path, PathBuf};
use std::sync::Once;

use ndarray::Array2;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FONT_NAME: &str = "sans-serif";

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed.
    #[error("{path}: drawing failed: {message}")]
    Draw {
        /// The output file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The output file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded font is not a valid TrueType file");
        }
    });
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    }
}

/// A palette that stays distinguishable for up to ten lines.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a [`LineChart`].
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
    /// An optional shaded band `(x, low, high)` around the line (e.g. min-max over seeds).
    pub band: Option<Vec<(f64, f64, f64)>>,
}

/// A line chart with a legend.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Logarithmic y axis (for losses).
    pub log_y: bool,
}

fn bounds(chart: &LineChart) -> (f64, f64, f64, f64) {
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
    for s in &chart.series {
        let pts = s.points.iter().map(|&(x, y)| (x, y, y));
        let band = s.band.iter().flatten().copied();
        for (x, lo, hi) in pts.chain(band) {
            if x.is_finite() && lo.is_finite() && hi.is_finite() && (!chart.log_y || lo > 0.0) {
                xs = (xs.0.min(x), xs.1.max(x));
                ys = (ys.0.min(lo), ys.1.max(hi));
            }
        }
    }
    if !xs.0.is_finite() {
        return (0.0, 1.0, 0.1, 1.0);
    }
    if xs.0 == xs.1 {
        xs.1 = xs.0 + 1.0;
    }
    if ys.0 == ys.1 {
        ys = (ys.0 * 0.9 - 1e-9, ys.1 * 1.1 + 1e-9);
    }
    (xs.0, xs.1, ys.0, ys.1)
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> Result<(), String> {
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1, y0, y1) = bounds(chart);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&chart.title, (FONT_NAME, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .label_style((FONT_NAME, 13))
                .axis_desc_style((FONT_NAME, 15))
                .light_line_style(RGBColor(240, 240, 240))
                .max_light_lines(2)
                .y_label_formatter(&|v: &f64| tick(*v))
                .x_label_formatter(&|v: &f64| tick(*v))
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, s) in chart.series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                if let Some(band) = &s.band {
                    let upper = band.iter().map(|&(x, _, hi)| (x, hi));
                    let lower = band.iter().rev().map(|&(x, lo, _)| (x, lo));
                    let poly: Vec<(f64, f64)> = upper
                        .chain(lower)
                        .filter(|&(_, y)| y.is_finite() && (!chart.log_y || y > 0.0))
                        .collect();
                    ctx.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18))))
                        .map_err(|e| e.to_string())?;
                }
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|&(_, y)| y.is_finite() && (!chart.log_y || y > 0.0))
                    .collect();
                ctx.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                    });
            }
            if chart.series.len() > 1 || chart.series.iter().any(|s| !s.name.is_empty()) {
                ctx.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font((FONT_NAME, 13))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
        }};
    }
    if chart.log_y {
        body!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| e.to_string())?
        );
    } else {
        let pad = (y1 - y0) * 0.05;
        body!(
            builder
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|e| e.to_string())?
        );
    }
    area.present().map_err(|e| e.to_string())
}

/// A tick label with at most four significant digits and no float noise
/// (`0.300000000001` prints as `0.3`).
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn write_png(path: &Path, width: u32, height: u32, rgb: Vec<u8>) -> Result<(), PlotError> {
    let img = image::RgbImage::from_raw(width, height, rgb).expect("buffer matches size");
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    tegaki_tensor::io::write_atomic(path, &bytes).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&area).map_err(draw_err(path))?;
    }
    write_png(path, w, h, buf)
}

/// Writes `chart` as a PNG of `size` pixels.
pub fn line_chart_png(chart: &LineChart, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    render_png(path, size, |area| draw_lines(area, chart))
}

/// Writes `chart` as an SVG of `size` pixels.
pub fn line_chart_svg(chart: &LineChart, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    register_font();
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw_lines(&area, chart).map_err(draw_err(path))?;
    }
    tegaki_tensor::io::write_atomic(path, svg.as_bytes()).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a confusion matrix (`matrix[[true, predicted]]`) as a heat map with counts.
pub fn confusion_png(
    matrix: &Array2<usize>,
    classes: &[String],
    title: &str,
    path: &Path,
) -> Result<(), PlotError> {
    let k = matrix.nrows();
    let cell = 52u32;
    let (left, top) = (150u32, 60u32);
    let size = (left + cell * k as u32 + 20, top + cell * k as u32 + 110);
    render_png(path, size, |area| {
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        let text = |s: &str, x: i32, y: i32, px: u32, color: &RGBColor| {
            area.draw(&Text::new(
                s.to_string(),
                (x, y),
                (FONT_NAME, px).into_font().color(color),
            ))
            .map_err(|e| e.to_string())
        };
        text(title, 10, 12, 20, &BLACK)?;
        for t in 0..k {
            let row_total: usize = matrix.row(t).sum();
            for p in 0..k {
                let v = matrix[[t, p]];
                let frac = if row_total == 0 {
                    0.0
                } else {
                    v as f64 / row_total as f64
                };
                let shade = (255.0 * (1.0 - frac.sqrt())) as u8;
                let color = if t == p {
                    RGBColor(shade, 255 - (255 - shade) / 3, shade)
                } else {
                    RGBColor(255, shade, shade)
                };
                let (x, y) = (
                    (left + cell * p as u32) as i32,
                    (top + cell * t as u32) as i32,
                );
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    color.filled(),
                ))
                .map_err(|e| e.to_string())?;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32, y + cell as i32)],
                    RGBColor(200, 200, 200),
                ))
                .map_err(|e| e.to_string())?;
                let fg = if frac > 0.5 { WHITE } else { BLACK };
                text(&v.to_string(), x + 4, y + cell as i32 / 2 - 7, 13, &fg)?;
            }
            let name: String = classes
                .get(t)
                .map_or_else(|| t.to_string(), |c| c.chars().take(14).collect());
            text(
                &name,
                6,
                (top + cell * t as u32 + cell / 2 - 7) as i32,
                13,
                &BLACK,
            )?;
        }
        for p in 0..k {
            let x = (left + cell * p as u32 + 4) as i32;
            let label = classes
                .get(p)
                .map_or_else(|| p.to_string(), |c| c.chars().take(5).collect());
            text(&label, x, (top + cell * k as u32 + 8) as i32, 12, &BLACK)?;
        }
        text(
            "rows: true class, columns: predicted",
            10,
            (top + cell * k as u32 + 40) as i32,
            14,
            &BLACK,
        )?;
        area.present().map_err(|e| e.to_string())
    })
}

/// One tile of an image grid.
#[derive(Clone, Debug)]
pub struct Tile {
    /// Grey levels in [0, 1], row-major, `height x width` (1 = ink, drawn dark).
    pub pixels: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Text under the tile.
    pub caption: Option<String>,
}

/// Writes tiles as a grid with `columns` tiles per row, each pixel drawn as
/// `scale x scale`. Ink (1.0) is dark on a light background, as on paper.
pub fn image_grid_png(
    tiles: &[Tile],
    columns: usize,
    scale: u32,
    title: Option<&str>,
    path: &Path,
) -> Result<(), PlotError> {
    let columns = columns.max(1);
    let rows = tiles.len().div_ceil(columns).max(1);
    let th = tiles.iter().map(|t| t.height).max().unwrap_or(28) as u32 * scale;
    let tw = tiles.iter().map(|t| t.width).max().unwrap_or(28) as u32 * scale;
    let caption_h = if tiles.iter().any(|t| t.caption.is_some()) {
        18
    } else {
        0
    };
    let title_h = if title.is_some() { 30 } else { 0 };
    let gap = 6;
    let w = columns as u32 * (tw + gap) + gap;
    let h = title_h + rows as u32 * (th + caption_h + gap) + gap;
    render_png(path, (w, h), |area| {
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        if let Some(t) = title {
            area.draw(&Text::new(
                t.to_string(),
                (gap as i32, 6),
                (FONT_NAME, 18).into_font(),
            ))
            .map_err(|e| e.to_string())?;
        }
        for (i, tile) in tiles.iter().enumerate() {
            let x0 = gap + (i % columns) as u32 * (tw + gap);
            let y0 = title_h + gap + (i / columns) as u32 * (th + caption_h + gap);
            for r in 0..tile.height {
                for c in 0..tile.width {
                    let v = tile.pixels[r * tile.width + c].clamp(0.0, 1.0);
                    let g = (255.0 * (1.0 - v)) as u8;
                    let (x, y) = (
                        (x0 + c as u32 * scale) as i32,
                        (y0 + r as u32 * scale) as i32,
                    );
                    area.draw(&Rectangle::new(
                        [(x, y), (x + scale as i32, y + scale as i32)],
                        RGBColor(g, g, g).filled(),
                    ))
                    .map_err(|e| e.to_string())?;
                }
            }
            if let Some(cap) = &tile.caption {
                area.draw(&Text::new(
                    cap.clone(),
                    (x0 as i32, (y0 + th + 2) as i32),
                    (FONT_NAME, 12).into_font(),
                ))
                .map_err(|e| e.to_string())?;
            }
        }
        area.present().map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tegaki-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let img = image::open(path).unwrap();
        (img.width(), img.height())
    }

    #[test]
    fn line_chart_png_and_svg() {
        let chart = LineChart {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![Series {
                name: "adam".into(),
                points: (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect(),
                band: Some(
                    (1..50)
                        .map(|i| (i as f64, 0.8 / i as f64, 1.2 / i as f64))
                        .collect(),
                ),
            }],
            log_y: true,
        };
        let p = tmp("chart.png");
        line_chart_png(&chart, &p, (640, 400)).unwrap();
        assert_eq!(png_size(&p), (640, 400));
        let s = tmp("chart.svg");
        line_chart_svg(&chart, &s, (640, 400)).unwrap();
        let svg = std::fs::read_to_string(&s).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("adam"));
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.300000000001), "0.3");
        assert_eq!(tick(1234.6), "1235");
        assert_eq!(tick(0.012345), "0.01235");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn confusion_and_grid() {
        let m = Array2::from_shape_fn((3, 3), |(i, j)| if i == j { 50 } else { i + j });
        let p = tmp("confusion.png");
        confusion_png(&m, &["a".into(), "b".into(), "c".into()], "test", &p).unwrap();
        assert!(png_size(&p).0 > 150);
        let tiles: Vec<Tile> = (0..5)
            .map(|i| Tile {
                pixels: vec![i as f32 / 5.0; 16],
                height: 4,
                width: 4,
                caption: Some(format!("{i}")),
            })
            .collect();
        let g = tmp("grid.png");
        image_grid_png(&tiles, 3, 2, Some("grid"), &g).unwrap();
        let img = image::open(&g).unwrap().to_luma8();
        // first tile is blank (0 ink = white), second is darker
        assert_eq!(img.get_pixel(7, 37).0[0], 255);
        assert!(img.get_pixel(6 + 8 + 6 + 1, 37).0[0] < 255);
    }
}
