//! Making an arbitrary photo or scan of a digit look like an MNIST image, the
//! way MNIST itself was made: grey levels, ink bright on black, the ink's
//! bounding box scaled to fit 20x20 keeping its aspect ratio, then placed in a
//! 28x28 frame so that its centre of mass is at the centre.

use image::{GrayImage, ImageBuffer, Luma, imageops};

/// Pixels with at least this much ink (0..1) count for the bounding box.
const INK_THRESHOLD: f32 = 0.2;

/// A 28x28 MNIST-like image (row-major, ink = 1.0) from any grey image.
pub fn mnistify(img: &GrayImage) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut ink: Vec<f32> = img.pixels().map(|p| f32::from(p.0[0]) / 255.0).collect();
    if border_mean(&ink, w as usize, h as usize) > 0.5 {
        ink.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    // Stretch so the darkest background is 0 and the strongest ink 1.
    let lo = percentile(&ink, 0.5);
    let hi = ink.iter().copied().fold(0.0f32, f32::max);
    if hi - lo > 1e-6 {
        ink.iter_mut()
            .for_each(|v| *v = ((*v - lo) / (hi - lo)).clamp(0.0, 1.0));
    }
    let Some((x0, y0, x1, y1)) = bounding_box(&ink, w as usize, h as usize) else {
        return vec![0.0; 28 * 28];
    };
    let (bw, bh) = ((x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32);
    let mut crop: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::new(bw, bh);
    for y in 0..bh {
        for x in 0..bw {
            crop.put_pixel(
                x,
                y,
                Luma([ink[(y0 + y as usize) * w as usize + x0 + x as usize]]),
            );
        }
    }
    let scale = 20.0 / bw.max(bh) as f32;
    let nw = ((bw as f32 * scale).round() as u32).clamp(1, 20);
    let nh = ((bh as f32 * scale).round() as u32).clamp(1, 20);
    let small = imageops::resize(&crop, nw, nh, imageops::FilterType::Triangle);
    // centre of mass of the scaled digit
    let (mut sum, mut cx, mut cy) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y, p) in small.enumerate_pixels() {
        sum += p.0[0];
        cx += x as f32 * p.0[0];
        cy += y as f32 * p.0[0];
    }
    let (cx, cy) = if sum > 0.0 {
        (cx / sum, cy / sum)
    } else {
        (nw as f32 / 2.0, nh as f32 / 2.0)
    };
    let ox = (14.0 - cx).round() as i64;
    let oy = (14.0 - cy).round() as i64;
    let mut out = vec![0.0f32; 28 * 28];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        if (0..28).contains(&tx) && (0..28).contains(&ty) {
            out[ty as usize * 28 + tx as usize] = p.0[0].clamp(0.0, 1.0);
        }
    }
    out
}

fn border_mean(v: &[f32], w: usize, h: usize) -> f32 {
    let mut sum = 0.0;
    let mut n = 0;
    for y in 0..h {
        for x in 0..w {
            if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                sum += v[y * w + x];
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f32 }
}

fn percentile(v: &[f32], q: f32) -> f32 {
    let mut s: Vec<f32> = v.to_vec();
    s.sort_by(f32::total_cmp);
    s[((s.len() - 1) as f32 * q) as usize]
}

fn bounding_box(v: &[f32], w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if v[y * w + x] >= INK_THRESHOLD {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    (x0 != usize::MAX).then_some((x0, y0, x1, y1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dark vertical bar on white paper, off-centre, in a large image.
    fn bar_on_paper() -> GrayImage {
        GrayImage::from_fn(200, 120, |x, y| {
            if (30..50).contains(&x) && (10..110).contains(&y) {
                Luma([20])
            } else {
                Luma([240])
            }
        })
    }

    #[test]
    fn inverts_crops_scales_and_centres() {
        let out = mnistify(&bar_on_paper());
        assert_eq!(out.len(), 784);
        // background black, ink bright
        assert_eq!(out[0], 0.0);
        let ink_rows: Vec<usize> = (0..28)
            .filter(|y| (0..28).any(|x| out[y * 28 + x] > 0.5))
            .collect();
        let ink_cols: Vec<usize> = (0..28)
            .filter(|x| (0..28).any(|y| out[y * 28 + x] > 0.5))
            .collect();
        // the 100-pixel-tall bar is scaled to 20 rows, the 20-wide bar to 4 columns
        assert!((19..=21).contains(&ink_rows.len()), "{ink_rows:?}");
        assert!((3..=5).contains(&ink_cols.len()), "{ink_cols:?}");
        // centred
        let mid_col = (ink_cols[0] + ink_cols[ink_cols.len() - 1]) as f32 / 2.0;
        let mid_row = (ink_rows[0] + ink_rows[ink_rows.len() - 1]) as f32 / 2.0;
        assert!((mid_col - 13.5).abs() <= 1.0 && (mid_row - 13.5).abs() <= 1.0);
    }

    #[test]
    fn blank_image_gives_blank_digit() {
        let out = mnistify(&GrayImage::from_pixel(10, 10, Luma([255])));
        assert!(out.iter().all(|v| *v == 0.0));
    }
}
