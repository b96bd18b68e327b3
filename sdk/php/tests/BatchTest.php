<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\PhaseException;
use Phase\Sdk\Job;
use Phase\Sdk\Result;
use PHPUnit\Framework\TestCase;

/** `Client::runMany` (docs/sdk-php.md, "Batches") against two real nodes. */
final class BatchTest extends TestCase
{
    /** Every job id a node's log shows it ran. @return list<string> */
    private static function ran(NodeProcess $node): array
    {
        preg_match_all('/job ([0-9a-f]{12}) module/', $node->log(), $m);
        return $m[1];
    }

    public function testFiftyJobsAcrossTwoNodesWithOneKilledMidBatchAllEndVerifiedOrNamed(): void
    {
        $a = new NodeProcess();
        $b = new NodeProcess();
        $logger = new LinesLogger();
        $client = new Client([$a->url, $b->url], ['trusted_keys' => [$a->nodeKey, $b->nodeKey], 'backoff_ms' => 5, 'retries' => 3, 'logger' => $logger]);
        $hello = Job::fromFile(guest('hello'));
        $jobs = [];
        for ($i = 0; $i < 50; $i++) {
            $jobs["job-{$i}"] = $hello->withInput("batch input {$i}");
        }
        $jobs['trap'] = Job::fromFile(guest('hostile-loop'))->withLimits(fuel: 1_000_000);
        $jobs['invalid'] = Job::fromBytes("\0asm\x01\0\0\0garbage");
        $endedOnA = [];
        $killedAfter = 12;
        $seen = 0;
        $results = $client->runMany($jobs, 8, function ($key, $r) use ($a, &$seen, $killedAfter, &$endedOnA): void {
            if ($r instanceof Result && $r->receipt()->nodeKey === $a->nodeKey) {
                $endedOnA[] = substr($r->jobId(), 0, 12);
            }
            if (++$seen === $killedAfter) {
                $a->stop(); // mid-batch: A's jobs in flight fail over to B
            }
        });
        self::assertCount(52, $results);
        self::assertSame(array_keys($jobs), array_keys($results), 'in the order given');
        for ($i = 0; $i < 50; $i++) {
            $r = $results["job-{$i}"];
            self::assertInstanceOf(Result::class, $r, $r instanceof \Throwable ? $r->getMessage() : '');
            self::assertSame(strrev("batch input {$i}"), $r->stdout());
        }
        self::assertInstanceOf(JobException::class, $results['trap']);
        self::assertSame('out_of_fuel', $results['trap']->result->trap());
        self::assertInstanceOf(NodeException::class, $results['invalid']);
        self::assertSame('invalid_module', $results['invalid']->errorCode);
        // B ran no job twice, and none that had already ended on A.
        $onB = self::ran($b);
        self::assertSame(count($onB), count(array_unique($onB)), 'a job ran twice on B');
        self::assertSame([], array_values(array_intersect($endedOnA, $onB)), 'a job that ended on A ran again on B');
        self::assertNotEmpty($endedOnA, 'A ran some jobs before it was killed');
        $failovers = array_filter($logger->texts(), static fn ($t) => str_starts_with($t, "warning: phase: job") && str_contains($t, "failed on {$a->url}"));
        self::assertNotEmpty($failovers, 'jobs sent to A after it died went to B');
        $b->stop();
    }

    public function testABatchOverAPsr18ClientRunsOneAfterTheOther(): void
    {
        $node = new NodeProcess();
        $client = new Client(Transports::make('guzzle', [$node->url]), ['trusted_keys' => [$node->nodeKey]]);
        $results = $client->runMany(['x' => Job::fromFile(guest('hello'))->withInput('ab'), 'y' => Job::fromBytes('not wasm')]);
        self::assertSame('ba', $results['x']->stdout());
        self::assertInstanceOf(NodeException::class, $results['y']);
        $node->stop();
    }

    public function testConcurrencyIsBounded(): void
    {
        $node = new NodeProcess(['--max-concurrent', '2']);
        // Jobs long enough to overlap, on a node with two slots and no retries: a third request
        // in flight would be answered 429 busy, so all succeed only if at most two are.
        $client = new Client([$node->url], ['retries' => 0]);
        $jobs = array_map(static fn ($i) => Job::fromFile(guest('ticker'))->withInput("1 {$i}000000")->withLimits(fuel: 10_000_000_000), range(20, 25));
        $results = $client->runMany($jobs, 2);
        self::assertSame(6, count(array_filter($results, static fn ($r) => $r instanceof Result)), implode("\n", array_map(
            static fn ($r) => $r instanceof PhaseException ? $r->getMessage() : 'ok',
            $results
        )));
        $node->stop();
    }
}
