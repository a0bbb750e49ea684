// What a path says: its name, its folder, and the kind of file its name is.

export const nameOf = (path) => path.split('/').pop();
export const parentOf = (path) => path.split('/').slice(0, -1).join('/');
export const join = (dir, name) => (dir ? `${dir}/${name}` : name);

export const IMAGE = /\.(png|jpe?g|gif|webp|bmp|svg|avif|ico)$/i;
export const TEXT = /\.(txt|md|csv|tsv|json|log|xml|ya?ml|toml|ini|conf|rs|js|mjs|ts|py|go|c|h|cpp|hpp|java|kt|sh|css|html?|sql|rb|php)$/i;
export const PDF = /\.pdf$/i;
export const previewable = (name) => IMAGE.test(name) || TEXT.test(name) || PDF.test(name);
