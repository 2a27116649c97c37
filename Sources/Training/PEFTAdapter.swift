import Foundation
import Kernels
import Support
import Transformer

/// LoRA adapters in Hugging Face PEFT's files: `adapter_model.safetensors` with keys
/// `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
/// `….lora_B.weight` (`[out, r]`), and `adapter_config.json` (`peft_type: LORA`, `r`,
/// `lora_alpha`, `target_modules`, `use_rslora`, …).
public enum PEFTAdapter {
    public static let weightsFile = "adapter_model.safetensors"
    public static let configFile = "adapter_config.json"
    static let prefix = "base_model.model."
    static let modules = ["q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj", "up": "up_proj", "down": "down_proj"]
    /// A mixture of experts' expert matrices (Mixtral's names): TinyLM's `experts` target.
    static let expertModules = ["w1", "w2", "w3"]

    /// Writes the adapters of `model` into `directory`.
    public static func save(_ model: TransformerModel, to directory: String, baseModel: String) throws {
        guard let adapters = model.adapters else { throw TransformerError.checkpoint(path: directory, reason: "the model has no adapters") }
        try AtomicFile.createDirectory(directory)
        let p = model.parameters.pointer
        let tensors = model.layout.tensors.filter { $0.group == .adapter }
        for t in tensors where firstNonFinite(p + t.offset, count: t.count) != nil {
            throw TransformerError.checkpoint(path: directory, reason: "adapter tensor '\(t.name)' is not finite; not written")
        }
        let entries = tensors.map { Safetensors.Entry(name: prefix + $0.name, shape: $0.shape, data: UnsafeBufferPointer(start: p + $0.offset, count: $0.count)) }
        try withExtendedLifetime(model) { try Safetensors.write(entries, metadata: ["format": "pt"], to: directory + "/" + weightsFile) }
        var config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": adapters.rank, "lora_alpha": adapters.alpha, "lora_dropout": adapters.dropout,
            "target_modules": adapters.targets.flatMap { $0 == "experts" ? expertModules : modules[$0].map { [$0] } ?? [] }.sorted(), "bias": "none", "use_rslora": adapters.rankStabilized,
            "fan_in_fan_out": false, "base_model_name_or_path": baseModel, "inference_mode": true,
        ]
        if adapters.lastLayers != nil { config["layers_to_transform"] = Array(adapters.layers(of: model.config)) }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: directory + "/" + configFile)
    }

    /// `base` with the adapters in `directory` (written by TinyLM or by PEFT); tensors for which
    /// `trainable` holds get gradients (none by default).
    public static func load(_ directory: String, onto base: TransformerModel,
                            trainable: (String) -> Bool = { _ in false }) throws -> TransformerModel {
        let configPath = directory + "/" + configFile
        guard let data = FileManager.default.contents(atPath: configPath) else { throw FileError.notFound(path: configPath) }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TransformerError.invalidConfig(source: configPath, field: "(file)", reason: "is not a JSON object")
        }
        func field<T>(_ key: String, _ type: T.Type) throws -> T {
            guard let value = json[key] as? T else { throw TransformerError.invalidConfig(source: configPath, field: key, reason: "is missing or has the wrong type") }
            return value
        }
        guard (json["peft_type"] as? String) == "LORA" else {
            throw TransformerError.invalidConfig(source: configPath, field: "peft_type", reason: "must be LORA")
        }
        let rank = try field("r", Int.self), alpha = try field("lora_alpha", Double.self)
        let moduleNames: [String]
        if let list = json["target_modules"] as? [String] { moduleNames = list } else { moduleNames = [try field("target_modules", String.self)] }
        var seen = Set<String>()
        let targets = try moduleNames.map { name -> String in
            if expertModules.contains(name) || name == "experts" { return "experts" }
            guard let short = modules.first(where: { $0.value == name || $0.key == name })?.key else {
                throw TransformerError.invalidConfig(source: configPath, field: "target_modules", reason: "'\(name)' is not a projection TinyLM adapts")
            }
            return short
        }.filter { seen.insert($0).inserted }
        var config = AdapterConfig(rank: rank, alpha: alpha, targets: targets, rankStabilized: json["use_rslora"] as? Bool ?? false)
        if let dropout = json["lora_dropout"] as? Double, dropout >= 0, dropout < 1 { config.dropout = dropout }
        if let layers = json["layers_to_transform"] as? [Int], !layers.isEmpty {
            guard layers == Array((base.config.layers - layers.count)..<base.config.layers) else {
                throw TransformerError.invalidConfig(source: configPath, field: "layers_to_transform", reason: "only the last N layers are supported")
            }
            config.lastLayers = layers.count
        }
        let model = try TransformerModel.adapting(base, with: config, seed: 0, trainable: trainable)
        let file = try Safetensors.File(path: directory + "/" + weightsFile)
        let expected = Set(model.layout.tensors.filter { $0.group == .adapter }.map { prefix + $0.name })
        if let extra = file.tensors.keys.sorted().first(where: { !expected.contains($0) && !expected.contains($0.replacingOccurrences(of: ".default", with: "")) }) {
            throw TransformerError.checkpoint(path: directory, reason: "unexpected tensor '\(extra)' for this adapter config and model")
        }
        for t in model.layout.tensors where t.group == .adapter {
            try file.read(prefix + t.name, shape: t.shape, into: model.parameters.pointer + t.offset)
            if let bad = firstNonFinite(model.parameters.pointer + t.offset, count: t.count) {
                throw TransformerError.checkpoint(path: directory, reason: "tensor '\(t.name)' holds \(model.parameters.pointer[t.offset + bad]): weights must be finite")
            }
        }
        return model
    }
}
