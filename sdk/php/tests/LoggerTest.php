<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\VerificationException;
use Phase\Sdk\Job;
use Phase\Sdk\Transport\HttpTransport;
use PHPUnit\Framework\TestCase;

/** The optional PSR-3 logger (docs/sdk-php.md, "Logging"). */
final class LoggerTest extends TestCase
{
    private static ?NodeProcess $node = null;

    public static function setUpBeforeClass(): void
    {
        self::$node = new NodeProcess();
    }

    public static function tearDownAfterClass(): void
    {
        self::$node?->stop();
    }

    private const SECRET_INPUT = 'secret input 7f3a';

    public function testAttemptsAreDebugAFailoverIsAWarningAndNothingOfTheJobIsLogged(): void
    {
        $logger = new LinesLogger();
        $dead = 'http://127.0.0.1:' . self::freePort();
        $client = new Client([$dead, self::$node->url], ['logger' => $logger, 'sleep' => static function (): void {
        }]);
        $result = $client->run(Job::fromFile(guest('hello'))->withInput(self::SECRET_INPUT));
        $texts = $logger->texts();
        self::assertSame('debug', $logger->lines[0][0]);
        self::assertStringContainsString("attempt 1 on {$dead}", $texts[0]);
        self::assertSame('warning', $logger->lines[1][0], implode("\n", $texts));
        self::assertStringContainsString("failed on {$dead}", $texts[1]);
        self::assertStringContainsString('attempt 2 on ' . self::$node->url, $texts[1]);
        self::assertSame('debug: phase: job ' . $result->jobId() . ' from ' . self::$node->url . ' verified', end($texts));
        $all = serialize($logger->lines);
        foreach ([self::SECRET_INPUT, $result->stdout(), base64_encode(self::SECRET_INPUT), base64_encode($result->stdout())] as $secret) {
            self::assertStringNotContainsString($secret, $all, 'no job input or output in the log');
        }
    }

    public function testAVerificationFailureIsAnError(): void
    {
        $logger = new LinesLogger();
        $server = new HostileServer('tamper-stdout', self::$node->url);
        $client = new Client(new HttpTransport([$server->url], 1 << 20, false), ['logger' => $logger]);
        try {
            $client->run(Job::fromFile(guest('hello'))->withInput(self::SECRET_INPUT));
            self::fail('a tampered answer verifies');
        } catch (VerificationException) {
        }
        $errors = array_values(array_filter($logger->lines, static fn ($l) => $l[0] === 'error'));
        self::assertCount(1, $errors);
        self::assertStringContainsString("answer from {$server->url} failed verification", $errors[0][1]);
        self::assertStringNotContainsString(self::SECRET_INPUT, serialize($logger->lines));
    }

    public function testALoggerMustBeAPsr3Logger(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        new Client(['http://127.0.0.1:1'], ['logger' => new \stdClass()]);
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($s, false), ':'), 1);
        fclose($s);
        return $port;
    }
}
