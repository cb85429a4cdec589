//! Throughput of the affine + noise + thickening pipeline on 28x28 images.
//! Target: at least 20,000 images/s per core. Run at one thread with
//! `RAYON_NUM_THREADS=1 cargo bench -p tegaki-data`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array4;
use tegaki_data::{AugmentConfig, Pipeline};
use tegaki_tensor::rng;

fn batch(n: usize) -> Array4<f32> {
    Array4::from_shape_fn((n, 1, 28, 28), |(i, _, y, x)| {
        let (dy, dx) = (y as f32 - 13.5, x as f32 - 13.5 + (i % 5) as f32);
        let r = (dy * dy + dx * dx).sqrt();
        if (6.0..9.0).contains(&r) { 1.0 } else { 0.0 }
    })
}

fn bench(c: &mut Criterion) {
    let config = AugmentConfig::from_toml(
        r#"
        [augment]
        affine = { rotate_deg = 15, scale = [0.9, 1.1], translate = 0.1, shear_deg = 10 }
        noise = { sigma = 0.1 }
        thicken = { kernel = 2, p = 0.5 }
        "#,
        std::path::Path::new("bench.toml"),
    )
    .expect("valid config");
    let pipeline = Pipeline::from_config(&config).expect("valid pipeline");
    let n = 256;
    let original = batch(n);
    let mut group = c.benchmark_group("augment");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(
        format!(
            "affine+noise+thicken/28x28/batch{n}/threads{}",
            rayon::current_num_threads()
        ),
        |b| {
            let mut images = original.clone();
            let mut r = rng::seeded(7);
            b.iter(|| {
                images.assign(&original);
                pipeline.apply_batch(&mut images, &mut r);
            });
        },
    );
    // Each op alone, to see where the time goes.
    for (name, table) in [
        (
            "affine",
            "affine = { rotate_deg = 15, scale = [0.9, 1.1], translate = 0.1, shear_deg = 10 }",
        ),
        ("noise", "noise = { sigma = 0.1 }"),
        ("thicken", "thicken = { kernel = 2 }"),
    ] {
        let config = AugmentConfig::from_toml(
            &format!("[augment]\n{table}\n"),
            std::path::Path::new("op.toml"),
        )
        .expect("valid config");
        let pipeline = Pipeline::from_config(&config).expect("valid pipeline");
        group.bench_function(format!("{name}/28x28/batch{n}"), |b| {
            let mut images = original.clone();
            let mut r = rng::seeded(7);
            b.iter(|| {
                images.assign(&original);
                pipeline.apply_batch(&mut images, &mut r);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
