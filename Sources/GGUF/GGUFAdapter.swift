import Foundation
import Support
import Transformer

/// LoRA adapters as llama.cpp's adapter GGUF (`llama-cli --lora FILE`): `general.type =
/// adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted matrix
/// `<tensor>.lora_a` (`[r, in]`) and `<tensor>.lora_b` (`[out, r]`) under the base's GGUF
/// tensor names. q and k's `lora_b` rows are permuted as the base's rows are, so that the
/// product lands on llama.cpp's pairwise rotary layout. llama.cpp scales by `alpha / r`; the
/// file's alpha is `scale · r`, which also covers rsLoRA.
public enum GGUFAdapter {
    public static func gguf(_ model: TransformerModel, name: String) throws -> GGUFWriter {
        guard let adapters = model.adapters else { throw GGUFError.unsupported(path: "export-adapter", reason: "the model has no adapters") }
        guard try GGUFExport.architecture(of: model.config) == "llama" else {
            throw GGUFError.unsupported(path: "export-adapter", reason: "adapters export for llama-architecture models only")
        }
        var w = GGUFWriter()
        w.add("general.architecture", .string("llama"))
        w.add("general.type", .string("adapter"))
        w.add("general.name", .string(name))
        w.add("adapter.type", .string("lora"))
        let scale = adapters.rankStabilized ? adapters.alpha / Double(adapters.rank).squareRoot() : adapters.alpha / Double(adapters.rank)
        w.add("adapter.lora.alpha", .float(scale * Double(adapters.rank)))
        let p = model.parameters.pointer, hd = model.config.headDim
        for t in model.layout.tensors where t.group == .adapter && t.name.hasSuffix(".lora_A.weight") {
            let module = String(t.name.dropLast(".lora_A.weight".count))
            guard let ggufName = GGUFModel.ggufName(module + ".weight"),
                  let b = model.layout.tensor(named: module + ".lora_B.weight") else { continue }
            let a = Array(UnsafeBufferPointer(start: p + t.offset, count: t.count))
            let bRows = UnsafeBufferPointer(start: p + b.offset, count: b.count)
            let bValues = module.hasSuffix("q_proj") || module.hasSuffix("k_proj")
                ? GGUFModel.llamaOrder(bRows, rows: b.shape[0], columns: b.shape[1], headDim: hd) : Array(bRows)
            w.add(tensor: ggufName + ".lora_a", dimensions: t.shape.reversed(), type: .f32,
                  data: try a.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: .f32) })
            w.add(tensor: ggufName + ".lora_b", dimensions: b.shape.reversed(), type: .f32,
                  data: try bValues.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: .f32) })
        }
        return w
    }
}
