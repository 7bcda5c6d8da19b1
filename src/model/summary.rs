//! The Keras-style model summary (`model.summary()`), written into every run folder.

use super::{Layer, ModelPlan};

/// Renders `plan` as Keras 2 prints it: layer (type), output shape, parameter count, totals.
pub fn render(name: &str, plan: &ModelPlan) -> String {
    table(name, plan, None)
}

/// The summary with costs, for `runner check`: multiply-accumulates per image for each layer
/// and in total, and an estimate of the activation memory of one training batch.
pub fn render_with_costs(name: &str, plan: &ModelPlan, batch: usize) -> String {
    table(name, plan, Some(batch))
}

fn table(name: &str, plan: &ModelPlan, costs: Option<usize>) -> String {
    let width = if costs.is_some() { 94 } else { 78 };
    let rule = |c: char| c.to_string().repeat(width);
    let row = |label: &str, shape: String, params: usize, macs: u64| {
        let base = format!(" {label:<34}{shape:<26}{:>14}", thousands(params));
        match costs {
            Some(_) => format!("{base}{:>16}\n", thousands(macs as usize)),
            None => base + "\n",
        }
    };
    let mut out = format!("Model: \"{name}\"\n{}\n", rule('_'));
    let header = format!(" {:<34}{:<26}{:>14}", "Layer (type)", "Output Shape", "Param #");
    out += &match costs {
        Some(_) => format!("{header}{:>16}\n{}\n", "MACs", rule('=')),
        None => format!("{header}\n{}\n", rule('=')),
    };
    out += &row("input (InputLayer)", plan.input.to_string(), 0, 0);
    for layer in &plan.layers {
        let params: usize = layer.params.iter().map(|p| p.dims.iter().product::<usize>()).sum();
        let label = format!("{} ({})", layer.name, Layer::class_name(&layer.config));
        out += &row(&label, layer.output.to_string(), params, layer.config.macs(layer.input, layer.output));
    }
    let count = |trainable: bool| -> usize {
        let specs = plan.layers.iter().flat_map(|l| &l.params).filter(|p| p.trainable == trainable);
        specs.map(|p| p.dims.iter().product::<usize>()).sum()
    };
    out += &format!(
        "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n",
        rule('='),
        thousands(plan.param_count()),
        thousands(count(true)),
        thousands(count(false))
    );
    if let Some(batch) = costs {
        let macs: u64 = plan.layers.iter().map(|l| l.config.macs(l.input, l.output)).sum();
        // Every layer's output is kept for the backward pass, and gets a gradient of the same
        // size: 2 × (input + Σ outputs) × batch × 4 bytes.
        let values = plan.input.len() + plan.layers.iter().map(|l| l.output.len()).sum::<usize>();
        let bytes = 2 * values * batch * 4;
        out += &format!(
            "Multiply-accumulates per image: {} forward, about {} per training image (forward + backward)\n\
             Activation memory for one training batch of {batch}: about {:.1} MiB\n",
            thousands(macs as usize),
            thousands(3 * macs as usize),
            bytes as f64 / (1 << 20) as f64
        );
    }
    out + &rule('_') + "\n"
}

/// `1277601` → `1,277,601`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
