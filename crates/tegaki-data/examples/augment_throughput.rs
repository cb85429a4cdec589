//! Runs the affine + noise + thickening pipeline on 28x28 images for a fixed
//! number of batches and prints the image count and wall time. On a busy
//! machine, divide the count by the process's CPU time instead
//! (`/usr/bin/time -f %U`) to get images per core-second:
//! `RAYON_NUM_THREADS=1 /usr/bin/time -f "%U s user" cargo run --release -p tegaki-data --example augment_throughput`

use ndarray::Array4;
use tegaki_data::{AugmentConfig, Pipeline};
use tegaki_tensor::rng;

fn main() {
    let config = AugmentConfig::from_toml(
        "[augment]\naffine = { rotate_deg = 15, scale = [0.9, 1.1], translate = 0.1, shear_deg = 10 }\nnoise = { sigma = 0.1 }\nthicken = { kernel = 2, p = 0.5 }\n",
        std::path::Path::new("example.toml"),
    )
    .expect("valid config");
    let pipeline = Pipeline::from_config(&config).expect("valid pipeline");
    let n = 256;
    let batches = 800;
    let original = Array4::from_shape_fn((n, 1, 28, 28), |(i, _, y, x)| {
        let (dy, dx) = (y as f32 - 13.5, x as f32 - 13.5 + (i % 5) as f32);
        let r = (dy * dy + dx * dx).sqrt();
        if (6.0..9.0).contains(&r) { 1.0 } else { 0.0 }
    });
    let mut images = original.clone();
    let mut r = rng::seeded(7);
    let start = std::time::Instant::now();
    for _ in 0..batches {
        images.assign(&original);
        pipeline.apply_batch(&mut images, &mut r);
    }
    let wall = start.elapsed().as_secs_f64();
    let total = n * batches;
    println!(
        "{total} images in {wall:.3} s wall = {:.0} images/s on {} rayon thread(s)",
        total as f64 / wall,
        rayon::current_num_threads()
    );
}
