// The tensor core: dtypes, shapes, tensors, the backend seam and registry, scopes, costs, errors.
export * from './dtype.js';
export * from './errors.js';
export * from './shape.js';
export { Tensor } from './tensor.js';
export * from './backend.js';
export * from './registry.js';
export { tidy, keep, isTensor, TENSOR_BRAND } from './scope.js';
export { CostRecorder, withCost, costSection, recordCost, type CostEntry } from './cost.js';
