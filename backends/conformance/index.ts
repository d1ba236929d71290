export { compare, type Comparison, type Tolerance } from './compare.js';
export { OP_CASES, type OpCase, type InputSpec } from './cases.js';
export { verifyBackend, selectCases, summarize, formatResult, formatSupport, makeHostInput, type CaseResult, type VerifyOptions } from './harness.js';
