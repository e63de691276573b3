import http from 'node:http';

/** A plain HTTP request to the ops listener on 127.0.0.1 (no keep-alive, so nothing lingers). */
export function httpGet(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The Prometheus exposition text of the ops listener. */
export async function metricsText(port: number): Promise<string> {
  return (await httpGet(port, '/metrics')).body;
}

/** The value of one sample in Prometheus exposition text, e.g. sample(text, 'x_total{a="b"}'). */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
