//! The per-image operations, on one CHW image stored as `&mut [f32]`.
//!
//! Geometric ops compute each output pixel's source position once and reuse
//! it for every channel; sampling reads at most four neighbours and never
//! allocates. Scratch buffers come from the caller (one per worker thread).

use rand::RngExt;
use rand_distr::StandardNormal;

use tegaki_tensor::rng::SeededRng;

/// Image geometry `(channels, height, width)`.
pub type Shape = (usize, usize, usize);

/// Reusable buffers for one worker.
#[derive(Default, Debug)]
pub struct Scratch {
    pub(crate) image: Vec<f32>,
    pub(crate) dx: Vec<f32>,
    pub(crate) dy: Vec<f32>,
    pub(crate) tmp: Vec<f32>,
}

/// True with probability `p`; always consumes one draw so that later ops see
/// the same stream whatever `p` is.
pub(crate) fn coin(rng: &mut SeededRng, p: f32) -> bool {
    let u: f32 = rng.random();
    u < p
}

pub(crate) fn uniform(rng: &mut SeededRng, lo: f32, hi: f32) -> f32 {
    let u: f32 = rng.random();
    lo + (hi - lo) * u
}

/// The inverse of `rotate(theta) * shear_x(phi) * scale(s)`, i.e. the map
/// from output offsets (relative to the centre) to source offsets.
pub(crate) fn inverse_affine(theta: f32, shear: f32, scale: f32) -> [f32; 4] {
    let (sin, cos) = theta.sin_cos();
    let t = shear.tan();
    let inv = 1.0 / scale;
    // shear_x(phi)^-1 * rotate(theta)^-1, then 1/scale
    [
        (cos + t * sin) * inv,
        (sin - t * cos) * inv,
        -sin * inv,
        cos * inv,
    ]
}

#[inline]
fn fetch(plane: &[f32], w: usize, h: usize, x: isize, y: isize) -> f32 {
    if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
        plane[y as usize * w + x as usize]
    } else {
        0.0
    }
}

/// `floor` as an integer. `f32::floor` is a libm call on baseline x86_64
/// (no SSE4.1 `roundss`); truncation plus a correction is a few instructions.
/// Coordinates here are bounded by the validated configs, far inside `i32`.
#[inline]
fn fast_floor(v: f32) -> isize {
    let t = v as i32;
    (if (t as f32) > v { t - 1 } else { t }) as isize
}

/// Bilinear sample of every channel at source `(sx, sy)`, zero outside,
/// written to `out[ch * plane + o]`.
#[inline(always)]
fn sample_into(src: &[f32], out: &mut [f32], (c, h, w): Shape, o: usize, sx: f32, sy: f32) {
    let plane = h * w;
    let x0 = fast_floor(sx);
    let y0 = fast_floor(sy);
    let fx = sx - x0 as f32;
    let fy = sy - y0 as f32;
    let w00 = (1.0 - fx) * (1.0 - fy);
    let w01 = fx * (1.0 - fy);
    let w10 = (1.0 - fx) * fy;
    let w11 = fx * fy;
    if x0 >= 0 && y0 >= 0 && (x0 as usize) + 1 < w && (y0 as usize) + 1 < h {
        let i = y0 as usize * w + x0 as usize;
        for ch in 0..c {
            let p = &src[ch * plane..(ch + 1) * plane];
            out[ch * plane + o] = w00 * p[i] + w01 * p[i + 1] + w10 * p[i + w] + w11 * p[i + w + 1];
        }
    } else if x0 >= -1 && y0 >= -1 && x0 < w as isize && y0 < h as isize {
        for ch in 0..c {
            let p = &src[ch * plane..(ch + 1) * plane];
            out[ch * plane + o] = w00 * fetch(p, w, h, x0, y0)
                + w01 * fetch(p, w, h, x0 + 1, y0)
                + w10 * fetch(p, w, h, x0, y0 + 1)
                + w11 * fetch(p, w, h, x0 + 1, y0 + 1);
        }
    } else {
        for ch in 0..c {
            out[ch * plane + o] = 0.0;
        }
    }
}

/// Warps `img` by the inverse map `m` about the centre, then shifts by
/// `(tx, ty)` pixels. Identity parameters reproduce the input exactly.
pub(crate) fn affine(
    img: &mut [f32],
    shape: Shape,
    m: [f32; 4],
    tx: f32,
    ty: f32,
    scratch: &mut Vec<f32>,
) {
    scratch.clear();
    scratch.extend_from_slice(img);
    // Grey images are the common case: a literal channel count lets the
    // compiler drop the per-pixel channel loop in that copy of the body.
    if shape.0 == 1 {
        affine_rows(scratch, img, (1, shape.1, shape.2), m, tx, ty);
    } else {
        affine_rows(scratch, img, shape, m, tx, ty);
    }
}

#[inline(always)]
fn affine_rows(src: &[f32], img: &mut [f32], shape: Shape, m: [f32; 4], tx: f32, ty: f32) {
    let (_, h, w) = shape;
    let cx = (w as f32 - 1.0) * 0.5;
    let cy = (h as f32 - 1.0) * 0.5;
    for y in 0..h {
        let oy = y as f32 - cy - ty;
        // source of (x = 0, y), relative to which each x step adds (m[0], m[2])
        let bx = m[0] * (-cx - tx) + m[1] * oy + cx;
        let by = m[2] * (-cx - tx) + m[3] * oy + cy;
        for x in 0..w {
            let xf = x as f32;
            sample_into(src, img, shape, y * w + x, bx + m[0] * xf, by + m[2] * xf);
        }
    }
}

/// Adds N(0, sigma^2) noise to each value and clamps to [0, 1].
pub(crate) fn noise(img: &mut [f32], sigma: f32, rng: &mut SeededRng) {
    for v in img.iter_mut() {
        let z: f32 = rng.sample(StandardNormal);
        *v = (*v + sigma * z).clamp(0.0, 1.0);
    }
}

/// Grey-level dilation (`max`) or erosion (`min`) with a `k` x `k` square,
/// over in-bounds neighbours only; separable (rows, then columns).
pub(crate) fn morph(img: &mut [f32], (c, h, w): Shape, k: usize, dilate: bool, tmp: &mut Vec<f32>) {
    if k <= 1 {
        return;
    }
    let lo = (k as isize - 1) / 2;
    let hi = k as isize / 2;
    let pick = |a: f32, b: f32| if dilate { a.max(b) } else { a.min(b) };
    let plane = h * w;
    tmp.resize(plane, 0.0);
    for ch in 0..c {
        let p = &mut img[ch * plane..(ch + 1) * plane];
        for y in 0..h {
            let row = &p[y * w..(y + 1) * w];
            for x in 0..w {
                let a = (x as isize - lo).max(0) as usize;
                let b = ((x as isize + hi) as usize).min(w - 1);
                tmp[y * w + x] = row[a..=b].iter().copied().reduce(pick).unwrap_or(0.0);
            }
        }
        for y in 0..h {
            let a = (y as isize - lo).max(0) as usize;
            let b = ((y as isize + hi) as usize).min(h - 1);
            for x in 0..w {
                let mut acc = tmp[a * w + x];
                for yy in a + 1..=b {
                    acc = pick(acc, tmp[yy * w + x]);
                }
                p[y * w + x] = acc;
            }
        }
    }
}

/// A normalised 1-D Gaussian kernel of standard deviation `sigma`, radius `ceil(3 sigma)`.
pub(crate) fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.into_iter().map(|v| v / s).collect()
}

/// Separable Gaussian blur of one `h` x `w` field with zero padding.
fn blur(field: &mut [f32], h: usize, w: usize, kernel: &[f32], tmp: &mut Vec<f32>) {
    let r = (kernel.len() / 2) as isize;
    tmp.resize(h * w, 0.0);
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, &kv) in kernel.iter().enumerate() {
                let xx = x as isize + j as isize - r;
                if xx >= 0 && (xx as usize) < w {
                    acc += kv * field[y * w + xx as usize];
                }
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, &kv) in kernel.iter().enumerate() {
                let yy = y as isize + j as isize - r;
                if yy >= 0 && (yy as usize) < h {
                    acc += kv * tmp[yy as usize * w + x];
                }
            }
            field[y * w + x] = acc;
        }
    }
}

/// Elastic distortion (Simard et al. 2003, section 2): displacements uniform
/// in [-1, 1], blurred by `kernel`, scaled by `alpha`, then bilinear resampling.
pub(crate) fn elastic(
    img: &mut [f32],
    shape: Shape,
    alpha: f32,
    kernel: &[f32],
    rng: &mut SeededRng,
    s: &mut Scratch,
) {
    let (_, h, w) = shape;
    let plane = h * w;
    s.dx.clear();
    s.dy.clear();
    s.dx.extend((0..plane).map(|_| uniform(rng, -1.0, 1.0)));
    s.dy.extend((0..plane).map(|_| uniform(rng, -1.0, 1.0)));
    blur(&mut s.dx, h, w, kernel, &mut s.tmp);
    blur(&mut s.dy, h, w, kernel, &mut s.tmp);
    s.image.clear();
    s.image.extend_from_slice(img);
    for y in 0..h {
        for x in 0..w {
            let o = y * w + x;
            let sx = x as f32 + alpha * s.dx[o];
            let sy = y as f32 + alpha * s.dy[o];
            sample_into(&s.image, img, shape, o, sx, sy);
        }
    }
}

/// Shifts the image by whole pixels `(dx, dy)` with zero fill (pad + crop).
pub(crate) fn shift(img: &mut [f32], (c, h, w): Shape, dx: isize, dy: isize, tmp: &mut Vec<f32>) {
    if dx == 0 && dy == 0 {
        return;
    }
    let plane = h * w;
    tmp.clear();
    tmp.extend_from_slice(img);
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let sx = x as isize - dx;
                let sy = y as isize - dy;
                img[ch * plane + y * w + x] =
                    fetch(&tmp[ch * plane..(ch + 1) * plane], w, h, sx, sy);
            }
        }
    }
}

/// Sets rows `y0..y1`, columns `x0..x1` of every channel to `value`.
pub(crate) fn fill_rect(
    img: &mut [f32],
    (c, h, w): Shape,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
    value: f32,
) {
    let plane = h * w;
    for ch in 0..c {
        for y in y0..y1.min(h) {
            let row = ch * plane + y * w;
            img[row + x0.min(w)..row + x1.min(w)].fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_affine_is_exact_and_rotation_by_90_permutes() {
        let shape = (2, 5, 5);
        let img: Vec<f32> = (0..50).map(|i| i as f32 / 50.0).collect();
        let mut out = img.clone();
        let mut tmp = Vec::new();
        affine(
            &mut out,
            shape,
            inverse_affine(0.0, 0.0, 1.0),
            0.0,
            0.0,
            &mut tmp,
        );
        assert_eq!(out, img);

        // 90 degrees counter-clockwise in image coordinates (y down)
        let mut rot = img.clone();
        affine(
            &mut rot,
            shape,
            inverse_affine(std::f32::consts::FRAC_PI_2, 0.0, 1.0),
            0.0,
            0.0,
            &mut tmp,
        );
        for ch in 0..2 {
            for y in 0..5 {
                for x in 0..5 {
                    // output(x, y) = input(R^-1 (x - c) + c) with R^-1 = [[0, 1], [-1, 0]]
                    let (sx, sy) = (y, 4 - x);
                    let got = rot[ch * 25 + y * 5 + x];
                    let want = img[ch * 25 + sy * 5 + sx];
                    assert!((got - want).abs() < 1e-5, "({x},{y}) {got} vs {want}");
                }
            }
        }

        // translation by one pixel right: column 0 becomes zero
        let mut t = img.clone();
        affine(
            &mut t,
            shape,
            inverse_affine(0.0, 0.0, 1.0),
            1.0,
            0.0,
            &mut tmp,
        );
        assert_eq!(t[0], 0.0);
        assert!((t[1] - img[0]).abs() < 1e-6);
    }

    #[test]
    fn fast_floor_matches_floor() {
        for v in [-2.5f32, -1.0, -0.25, 0.0, 0.75, 3.0, 27.999, -0.0] {
            assert_eq!(fast_floor(v), v.floor() as isize, "{v}");
        }
    }

    #[test]
    fn dilation_and_erosion() {
        let shape = (1, 3, 4);
        let mut img = vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut tmp = Vec::new();
        let orig = img.clone();
        morph(&mut img, shape, 3, true, &mut tmp);
        #[rustfmt::skip]
        let want = vec![1.0, 1.0, 1.0, 0.0,
                        1.0, 1.0, 1.0, 0.0,
                        1.0, 1.0, 1.0, 0.0];
        assert_eq!(img, want);
        morph(&mut img, shape, 3, false, &mut tmp);
        // erosion over in-bounds neighbours: columns next to column 3 shrink
        assert_eq!(img[1], 1.0);
        assert_eq!(img[2], 0.0);
        let mut same = orig.clone();
        morph(&mut same, shape, 1, true, &mut tmp);
        assert_eq!(same, orig);
        // kernel 2 reaches right/down
        let mut k2 = orig.clone();
        morph(&mut k2, shape, 2, true, &mut tmp);
        assert_eq!((k2[0], k2[5], k2[4], k2[10]), (1.0, 1.0, 1.0, 0.0));
    }

    #[test]
    fn shift_and_fill() {
        let shape = (1, 2, 3);
        let mut img = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut tmp = Vec::new();
        shift(&mut img, shape, 1, -1, &mut tmp);
        assert_eq!(img, vec![0.0, 4.0, 5.0, 0.0, 0.0, 0.0]);
        fill_rect(&mut img, shape, (0, 9), (1, 2), 0.5);
        assert_eq!(img, vec![0.0, 0.5, 5.0, 0.0, 0.5, 0.0]);
    }

    #[test]
    fn gaussian_kernel_is_normalised_and_symmetric() {
        let k = gaussian_kernel(1.5);
        assert_eq!(k.len(), 11);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(k[0], k[10]);
    }
}
