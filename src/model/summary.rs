//! The Keras-style model summary (`model.summary()`), written into every run folder.

use super::ModelPlan;

/// Renders `plan` as Keras 2 prints it: layer (type), output shape, parameter count, totals.
pub fn render(name: &str, plan: &ModelPlan) -> String {
    let rule = |c: char| c.to_string().repeat(78);
    let mut out = format!("Model: \"{name}\"\n{}\n", rule('_'));
    out += &format!(" {:<34}{:<26}{:>14}\n{}\n", "Layer (type)", "Output Shape", "Param #", rule('='));
    out += &format!(" {:<34}{:<26}{:>14}\n", "input (InputLayer)", plan.input.to_string(), 0);
    for layer in &plan.layers {
        let params: usize = layer.params.iter().map(|p| p.dims.iter().product::<usize>()).sum();
        let label = format!("{} ({})", layer.name, crate::model::Layer::class_name(&layer.config));
        out += &format!(" {:<34}{:<26}{:>14}\n", label, layer.output.to_string(), thousands(params));
    }
    let total = thousands(plan.param_count());
    out += &format!(
        "{}\nTotal params: {total}\nTrainable params: {total}\nNon-trainable params: 0\n{}\n",
        rule('='),
        rule('_')
    );
    out
}

/// `1277601` → `1,277,601`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
