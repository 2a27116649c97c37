import Foundation
import Kernels
import Support
import Testing
import Tokenizer

/// `../shared/data` beside the repository, when present (CI has it; a fresh clone may not).
let sharedData: String? = {
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let path = repo.deletingLastPathComponent().appendingPathComponent("shared/data").path
    return FileManager.default.fileExists(atPath: path) ? path : nil
}()

/// A fresh temporary directory.
func temporaryDirectory() -> String {
    ScratchDirectory.make("test")
}

/// A generated corpus: sentences from a small grammar with numbers, punctuation, some
/// non-ASCII words and the chat markers, so tests need no data files.
func generatedCorpus(lines: Int, seed: UInt64) -> String {
    var rng = SplitMix64(seed: seed)
    let subjects = ["the cat", "a little girl", "Tom", "the big dog", "Lily", "our teacher", "el niño", "die Straße"]
    let verbs = ["saw", "liked", "found", "wanted", "played with", "ran to", "ate", "painted"]
    let objects = ["a red ball", "the park", "three apples", "her mom", "a tiny bird", "the café", "a kite"]
    func pick(_ list: [String]) -> String { list[Int(rng.next() % UInt64(list.count))] }
    var text = ""
    for i in 0..<lines {
        text += "\(pick(subjects).capitalized) \(pick(verbs)) \(pick(objects)) at \(rng.next() % 24):\(rng.next() % 60)."
        if i % 7 == 0 { text += " <|im_start|>user \(pick(objects))<|im_end|>" }
        text += "\n"
    }
    return text
}

/// Trains (once per options) a small tokenizer on a generated corpus.
func trainSmallTokenizer(
    vocabulary: Int = 600, normalization: String = "identity", removeExtraWhitespaces: Bool = false,
    modelType: ModelProto.ModelType = .bpe
) throws -> (tokenizer: SentencePieceTokenizer, data: Data) {
    // One corpus path for every call: the model records its input paths, and the determinism
    // test compares bytes.
    let corpus = ScratchDirectory.file("test-corpus.txt")
    if !FileManager.default.fileExists(atPath: corpus) {
        try AtomicFile.write(Data(generatedCorpus(lines: 2000, seed: 1).utf8), to: corpus)
    }
    var options = TokenizerTrainingOptions()
    options.vocabularySize = vocabulary
    options.modelType = modelType
    options.normalization = normalization
    options.removeExtraWhitespaces = removeExtraWhitespaces
    options.userDefinedSymbols = TokenizerTrainingOptions.chatMarkers
    options.characterCoverage = 1
    options.threads = 2
    let data = try SentencePieceTrainer.train(inputs: [corpus], options: options)
    return (try SentencePieceTokenizer(modelData: data, source: "test.model"), data)
}
