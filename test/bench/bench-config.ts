// The LaVi shape the model benchmarks share (model-bench.ts, wasm-bench.ts).

import { type ModelConfig, tinyConfig } from '../../models/lavi/config.js';

/** ~20M parameters: a 4-layer 192-wide ViT on 112-px images (64 tokens), an 8-layer 384-wide Qwen2-style LLM. */
export function benchConfig(): ModelConfig {
  return tinyConfig({
    vision_config: { image_size: 112, patch_size: 14, hidden_size: 192, num_hidden_layers: 4, num_attention_heads: 3, intermediate_size: 768 },
    text_config: {
      vocab_size: 8192, hidden_size: 384, intermediate_size: 1024, num_hidden_layers: 8, num_attention_heads: 6, num_key_value_heads: 2,
      max_position_embeddings: 2048, tie_word_embeddings: true, rope_theta: 1e6,
    },
    lavi_config: { conditioner_width: 128, conditioner_heads: 4 },
    eos_token_ids: [],
  });
}
