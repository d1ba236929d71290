// The public op API. Every op validates its arguments (errors name the op and the shapes), computes its output
// shape, records its cost, and dispatches to the inputs' backend.
export { tensor, zeros, full } from './create.js';
export { matmul, linear, type MatmulOptions } from './matmul.js';
export { add, sub, mul, div, unary, gelu, silu, relu, scale, swiglu } from './elementwise.js';
export { softmax } from './softmax.js';
export { layerNorm, rmsNorm, modulatedNorm, type ModulatedNormOptions } from './norm.js';
export { rope, type RopeOptions } from './rope.js';
export { attention, type AttentionOptions } from './attention.js';
export { reshape, transpose, slice, sliceAxis, concat, writeSlice, copy } from './layout.js';
export { embedding, argmax, cast } from './gather.js';
export { patchEmbed, resizeGrid, downsample2x } from './vision.js';
export { addOpObserver, runKernel, type OpCall, type OpObserver } from './dispatch.js';
