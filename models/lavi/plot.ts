// Hand-written SVG line plots for `lavi cost --plot` and `lavi bench --plot`: a row of panels (FLOPs, memory,
// time, ...) against the number of visual tokens, LaVi vs concat, each line labelled at its right end (no legend),
// and the LaVi/concat ratio printed under each point of the LaVi line.

export interface Series {
  label: string;
  points: [number, number][];
}

export interface Panel {
  title: string;
  /** Formats a y value (axis ticks and point labels). */
  fmt: (y: number) => string;
  lavi: Series;
  concat: Series;
}

const W = 360, H = 300, M = { l: 64, r: 70, t: 44, b: 46 };
const COLORS = { lavi: '#1f6feb', concat: '#d1242f' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(max: number, n = 4): number[] {
  if (!(max > 0)) return [0];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v <= max * 1.0001 + step / 2 && out.length < 12; v += step) out.push(v);
  return out;
}

function panel(p: Panel, ox: number): string {
  const xs = [...p.lavi.points, ...p.concat.points].map((q) => q[0]);
  const ys = [...p.lavi.points, ...p.concat.points].map((q) => q[1]);
  const xMax = Math.max(1, ...xs);
  const yTicks = niceTicks(Math.max(...ys, 0) * 1.08);
  const yMax = yTicks[yTicks.length - 1]! || 1;
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const X = (x: number) => ox + M.l + (x / xMax) * pw;
  const Y = (y: number) => M.t + ph - (y / yMax) * ph;
  const L: string[] = [];
  L.push(`<text x="${ox + W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  for (const t of yTicks) {
    L.push(`<line x1="${ox + M.l}" x2="${ox + M.l + pw}" y1="${Y(t)}" y2="${Y(t)}" stroke="#ddd"/>`);
    L.push(`<text x="${ox + M.l - 6}" y="${Y(t) + 4}" text-anchor="end" font-size="11" fill="#444">${esc(p.fmt(t))}</text>`);
  }
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  for (const t of xTicks) L.push(`<text x="${X(t)}" y="${M.t + ph + 16}" text-anchor="middle" font-size="11" fill="#444">${t}</text>`);
  L.push(`<text x="${ox + M.l + pw / 2}" y="${H - 10}" text-anchor="middle" font-size="12">visual tokens</text>`);
  L.push(`<line x1="${ox + M.l}" x2="${ox + M.l}" y1="${M.t}" y2="${M.t + ph}" stroke="#888"/><line x1="${ox + M.l}" x2="${ox + M.l + pw}" y1="${M.t + ph}" y2="${M.t + ph}" stroke="#888"/>`);
  const line = (s: Series, color: string, dash: string) => {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    if (!pts.length) return;
    L.push(`<polyline fill="none" stroke="${color}" stroke-width="2.5"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of pts) L.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3.5" fill="${color}"/>`);
    const [lx, ly] = pts[pts.length - 1]!;
    L.push(`<text x="${(X(lx) + 7).toFixed(1)}" y="${(Y(ly) + 4).toFixed(1)}" font-size="12" font-weight="bold" fill="${color}">${esc(s.label)}</text>`);
  };
  line(p.concat, COLORS.concat, '6 4');
  line(p.lavi, COLORS.lavi, '');
  // LaVi/concat ratio at each x both lines have, under the LaVi point.
  const cy = new Map(p.concat.points);
  for (const [x, y] of p.lavi.points) {
    const c = cy.get(x);
    if (c) L.push(`<text x="${X(x).toFixed(1)}" y="${(Y(y) + 16).toFixed(1)}" text-anchor="middle" font-size="10" fill="${COLORS.lavi}">×${(y / c).toFixed(2)}</text>`);
  }
  return L.join('\n');
}

/** The panels side by side, with a title line and a note line. */
export function plotSvg(title: string, note: string, panels: Panel[]): string {
  const width = W * panels.length;
  const height = H + 40;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<g transform="translate(0, 24)">`,
    ...panels.map((p, i) => panel(p, i * W)),
    `</g>`,
    `<text x="8" y="16" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<text x="8" y="${height - 6}" font-size="11" fill="#555">${esc(note)}</text>`,
    `</svg>`,
    '',
  ].join('\n');
}
