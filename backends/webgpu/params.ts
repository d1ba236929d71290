// Uniform parameter blocks: one ordered field list gives both the WGSL struct and the byte packing, so the two
// can never disagree. Scalars take one 4-byte word; vec4 fields are 16-byte aligned (WGSL uniform layout rules),
// and the struct size is a multiple of 16 bytes.

export type ParamType = 'u32' | 'i32' | 'f32' | 'vec4u' | 'vec4i' | 'vec4f';

interface Field {
  name: string;
  type: ParamType;
  /** Offset in 4-byte words. */
  word: number;
}

const WGSL_TYPE: Record<ParamType, string> = {
  u32: 'u32',
  i32: 'i32',
  f32: 'f32',
  vec4u: 'vec4<u32>',
  vec4i: 'vec4<i32>',
  vec4f: 'vec4<f32>',
};

export type ParamValues = Record<string, number | readonly number[]>;

export class ParamLayout {
  readonly fields: readonly Field[];
  /** Size in 4-byte words (a multiple of 4). */
  readonly words: number;
  private readonly byName: Map<string, Field>;

  constructor(spec: ReadonlyArray<readonly [string, ParamType]>) {
    const fields: Field[] = [];
    let word = 0;
    for (const [name, type] of spec) {
      if (type.startsWith('vec4')) word = (word + 3) & ~3;
      fields.push({ name, type, word });
      word += type.startsWith('vec4') ? 4 : 1;
    }
    this.words = Math.max(4, (word + 3) & ~3);
    this.fields = fields;
    this.byName = new Map(fields.map((f) => [f.name, f]));
  }

  get bytes(): number {
    return this.words * 4;
  }

  /** `struct <name> { ... }` with explicit padding members where vec4 alignment needs them. */
  wgsl(name = 'Params'): string {
    const lines: string[] = [];
    let word = 0;
    let pad = 0;
    for (const f of this.fields) {
      while (word < f.word) {
        lines.push(`  _pad${pad++}: u32,`);
        word++;
      }
      lines.push(`  ${f.name}: ${WGSL_TYPE[f.type]},`);
      word += f.type.startsWith('vec4') ? 4 : 1;
    }
    return `struct ${name} {\n${lines.join('\n')}\n}`;
  }

  /** Writes the values at `byteOffset` of `view` (little-endian). Missing fields are written as 0. */
  pack(values: ParamValues, view: DataView, byteOffset: number): void {
    for (const [k] of Object.entries(values)) {
      if (!this.byName.has(k)) throw new Error(`ParamLayout: unknown field '${k}'`);
    }
    for (const f of this.fields) {
      const v = values[f.name] ?? 0;
      const base = byteOffset + f.word * 4;
      if (f.type.startsWith('vec4')) {
        const arr = typeof v === 'number' ? [v, v, v, v] : v;
        for (let i = 0; i < 4; i++) writeWord(view, base + i * 4, f.type, arr[i] ?? 0);
      } else {
        if (typeof v !== 'number') throw new Error(`ParamLayout: field '${f.name}' is a scalar`);
        writeWord(view, base, f.type, v);
      }
    }
  }
}

function writeWord(view: DataView, at: number, type: ParamType, v: number): void {
  if (type === 'f32' || type === 'vec4f') view.setFloat32(at, v, true);
  else if (type === 'i32' || type === 'vec4i') view.setInt32(at, v, true);
  else view.setUint32(at, v >>> 0, true);
}
