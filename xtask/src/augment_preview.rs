//! `cargo xtask augment-preview --config FILE [--out preview.png]`: a PNG grid
//! with a row of original images and rows of their augmented versions.

use std::path::PathBuf;

use anyhow::Context;
use tegaki_data::{AugmentConfig, DatasetKind, Pipeline, Split, epoch_order, load};
use tegaki_tensor::rng;

/// Options of `cargo xtask augment-preview`.
#[derive(clap::Args)]
pub struct Args {
    /// A TOML file with an `[augment]` table (other tables are ignored, so a
    /// training config works).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The PNG to write.
    #[arg(long, default_value = "preview.png")]
    out: PathBuf,
    /// Which dataset's test images to show.
    #[arg(long, default_value = "mnist")]
    dataset: DatasetKind,
    /// Where datasets live (default: env TEGAKI_DATA, else ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Images per row.
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// Rows of augmented versions below the originals.
    #[arg(long, default_value_t = 4)]
    rows: usize,
    /// Seed for picking images and for the augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Screen pixels per image pixel.
    #[arg(long, default_value_t = 4)]
    scale: u32,
}

const GUTTER: u32 = 2;
/// Extra space under the originals row, so it reads as a header.
const HEADER_GAP: u32 = 6;

/// Renders the grid and writes it atomically.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.count > 0 && args.scale > 0,
        "--count and --scale must be positive"
    );
    let config = AugmentConfig::from_toml_file(&args.config)?;
    let pipeline = Pipeline::from_config(&config)?;
    let data_dir = tegaki_data::resolve_data_dir(args.data_dir.as_deref());
    let data = load(args.dataset, Split::Test, &data_dir)?;
    let count = args.count.min(data.len());
    let picks: Vec<usize> = epoch_order(data.len(), args.seed, 0)[..count].to_vec();
    let labels = data.labels_of(&picks);
    let (c, h, w) = data.shape();

    let mut aug_rng = rng::stream(args.seed, "augment-preview");
    let mut rows = vec![data.batch_f32(&picks)];
    for _ in 0..args.rows {
        let mut batch = data.batch_f32(&picks);
        pipeline.augment(&mut batch, &labels, data.num_classes(), &mut aug_rng);
        rows.push(batch);
    }

    let tile_w = w as u32 * args.scale;
    let tile_h = h as u32 * args.scale;
    let width = GUTTER + count as u32 * (tile_w + GUTTER);
    let height = GUTTER + rows.len() as u32 * (tile_h + GUTTER) + HEADER_GAP;
    let mut img = image::RgbImage::from_pixel(width, height, image::Rgb([96, 96, 96]));
    for (r, batch) in rows.iter().enumerate() {
        let top = GUTTER + r as u32 * (tile_h + GUTTER) + if r > 0 { HEADER_GAP } else { 0 };
        for i in 0..count {
            let left = GUTTER + i as u32 * (tile_w + GUTTER);
            for y in 0..tile_h {
                for x in 0..tile_w {
                    let (py, px) = ((y / args.scale) as usize, (x / args.scale) as usize);
                    let v = |ch: usize| {
                        (batch[[i, ch.min(c - 1), py, px]].clamp(0.0, 1.0) * 255.0).round() as u8
                    };
                    img.put_pixel(left + x, top + y, image::Rgb([v(0), v(1), v(2)]));
                }
            }
        }
    }
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .context("encoding the PNG")?;
    tegaki_tensor::io::write_atomic(&args.out, png.get_ref())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({width}x{height}): top row {count} originals from {}, then {} augmented rows (seed {})",
        args.out.display(),
        data.name(),
        args.rows,
        args.seed
    );
    Ok(())
}
