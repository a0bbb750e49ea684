// How things read: sizes, times and events, as the page shows them.

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function formatTime(ms) {
  const d = new Date(ms);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' });
}

/// An activity event as a sentence: "alice added notes.txt".
export function describe(ev) {
  const verb = { add: 'added', modify: 'edited', delete: 'deleted', move: 'moved', mkdir: 'made folder', rmdir: 'deleted folder' }[ev.op];
  const what = ev.op === 'move' ? `${ev.from} → ${ev.path}` : ev.path;
  return `${ev.user} ${verb} ${what}`;
}
