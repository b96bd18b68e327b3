<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use PHPUnit\Framework\TestCase;

/**
 * examples/async-web/index.php under PHP's built-in server, driven as a browser would: the
 * form submits a job, the page redirects to the job, and reloads show its status and output
 * until the verified result; then a CSV file uploaded is totalled by CPython and the file the
 * job left is shown and downloaded.
 */
final class ExampleWebTest extends TestCase
{
    public function testThePageSubmitsShowsProgressAndThenTheVerifiedResult(): void
    {
        $node = new NodeProcess();
        $jobs = sys_get_temp_dir() . '/phase-example-test-' . bin2hex(random_bytes(4));
        $sock = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($sock, false), ':'), 1);
        fclose($sock);
        $env = ['PHASE_NODES' => $node->url, 'PHASE_NODE_KEY' => $node->nodeKey, 'PHASE_JOBS_DIR' => $jobs,
            'PHASE_MODULE' => guest('ticker'), 'PHASE_PYTHON' => python_wasm(), 'PATH' => getenv('PATH')];
        $web = proc_open(
            [PHP_BINARY, '-S', "127.0.0.1:{$port}", REPO . '/sdk/php/examples/async-web/index.php'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']],
            $pipes,
            null,
            $env
        );
        try {
            $base = "http://127.0.0.1:{$port}";
            $deadline = microtime(true) + 5;
            while (!@fsockopen('127.0.0.1', $port) && microtime(true) < $deadline) {
                usleep(10000);
            }
            self::assertStringContainsString('<form method="post">', self::get("{$base}/")[1]);
            // Submitting answers at once with a redirect to the job's page.
            $t0 = microtime(true);
            [$status, $headers] = self::post("{$base}/", 'input=40+5000000');
            self::assertSame(303, $status);
            self::assertLessThan(5.0, microtime(true) - $t0);
            self::assertMatchesRegularExpression('#^/\?job=[0-9a-f]{64}$#', $headers['location']);
            $id = substr($headers['location'], strlen('/?job='));
            self::assertFileExists("{$jobs}/{$id}.token", 'the handle is stored');
            // Reloads: running with output so far, then verified with the whole output.
            $seen = [];
            $deadline = microtime(true) + 120;
            do {
                $page = self::get("{$base}{$headers['location']}")[1];
                preg_match('#<b id="status">(\w+)</b>#', $page, $m);
                $seen[] = $m[1] ?? '?';
                usleep(50000);
            } while (($m[1] ?? '') !== 'verified' && microtime(true) < $deadline);
            self::assertSame('verified', end($seen), $page);
            self::assertContains('running', $seen, 'the page showed the job running: ' . implode(',', array_unique($seen)));
            self::assertStringContainsString("tick 1\ntick 2\n", $page);
            self::assertStringContainsString("tick 40\n</pre>", $page);
            self::assertStringContainsString($node->nodeKey, $page);
            self::assertSame(404, self::get("{$base}/?job=" . str_repeat('0', 64))[0]);

            // The file job: an uploaded CSV in, Python totals it, the file it left offered
            // once it verified against the receipt.
            self::assertStringContainsString('<input type="file" name="csv">', self::get("{$base}/")[1]);
            $csv = "item,qty,price\napple,3,1.5\npear,1,2\napple,2,1.5\n";
            $boundary = 'phase' . bin2hex(random_bytes(8));
            $form = "--{$boundary}\r\nContent-Disposition: form-data; name=\"csv\"; filename=\"sales.csv\"\r\n"
                . "Content-Type: text/csv\r\n\r\n{$csv}\r\n--{$boundary}--\r\n";
            [$status, $headers] = self::post("{$base}/", $form, "multipart/form-data; boundary={$boundary}");
            self::assertSame(303, $status);
            $deadline = microtime(true) + 120;
            do {
                $page = self::get("{$base}{$headers['location']}")[1];
                usleep(100000);
            } while (!str_contains($page, 'id="status">verified') && !str_contains($page, 'id="status">failed') && microtime(true) < $deadline);
            self::assertStringContainsString('id="status">verified</b>: exit code 0', $page);
            self::assertStringContainsString("<pre id=\"output\">2 names\n</pre>", $page);
            self::assertStringContainsString("<pre id=\"file\">item,qty,price\napple,5,3\npear,1,2\n</pre>", $page);
            [$status, $download] = self::get("{$base}{$headers['location']}&download=1");
            self::assertSame([200, "item,qty,price\napple,5,3\npear,1,2\n"], [$status, $download]);
            $tooLarge = "--{$boundary}\r\nContent-Disposition: form-data; name=\"csv\"; filename=\"big.csv\"\r\n\r\n"
                . str_repeat('x', (1 << 20) + 1) . "\r\n--{$boundary}--\r\n";
            self::assertSame(400, self::post("{$base}/", $tooLarge, "multipart/form-data; boundary={$boundary}")[0]);
        } finally {
            proc_terminate($web, 9);
            proc_close($web);
            $node->stop();
            array_map('unlink', glob("{$jobs}/*") ?: []);
            @rmdir($jobs);
        }
    }

    /** @return array{int,string} */
    private static function get(string $url): array
    {
        $ctx = stream_context_create(['http' => ['ignore_errors' => true, 'timeout' => 30]]);
        $body = (string) file_get_contents($url, false, $ctx);
        preg_match('#^HTTP/\S+ (\d{3})#', $http_response_header[0], $m);
        return [(int) $m[1], $body];
    }

    /** @return array{int,array<string,string>} */
    private static function post(string $url, string $form, string $type = 'application/x-www-form-urlencoded'): array
    {
        $ctx = stream_context_create(['http' => ['method' => 'POST', 'content' => $form, 'follow_location' => 0,
            'header' => "Content-Type: {$type}\r\n", 'ignore_errors' => true, 'timeout' => 30]]);
        file_get_contents($url, false, $ctx);
        preg_match('#^HTTP/\S+ (\d{3})#', $http_response_header[0], $m);
        $headers = [];
        foreach (array_slice($http_response_header, 1) as $line) {
            [$k, $v] = array_map('trim', explode(':', $line, 2)) + [1 => ''];
            $headers[strtolower($k)] = $v;
        }
        return [(int) $m[1], $headers];
    }
}
