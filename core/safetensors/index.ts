// safetensors support: header parsing/validation, a lazy file reader, a writer, and a (sharded) checkpoint.

export {
  DEFAULT_MAX_HEADER_BYTES,
  DEFAULT_MAX_TENSOR_BYTES,
  READABLE_DTYPES,
  SAFETENSORS_DTYPE_BITS,
  parseHeader,
  readHeaderLength,
  validateHeader,
  type HeaderOptions,
  type ParsedHeader,
  type TensorEntry,
} from './header.js';
export {
  MEMORY_SOURCE,
  SafetensorsFile,
  decodeTensor,
  planDecode,
  type HostTensor,
  type OpenOptions,
  type ReadOptions,
} from './reader.js';
export { encodeSafetensors, writeSafetensors, type MetadataInput, type TensorSet } from './writer.js';
export { Checkpoint, INDEX_FILE_NAME, SINGLE_FILE_NAME, parseIndex } from './checkpoint.js';
export { fetchModelSource, nodeModelSource, type ModelSource, type ByteSource, type FetchSourceOptions, type SourceProgress } from './source.js';
