#!/usr/bin/perl
# A guestbook-style form whose state lives in the visitor's session
# (mod_session style): the session arrives url-encoded in HTTP_SESSION and
# is replaced by the X-Replace-Session response header, which shoal applies
# and never sends to the client. Each visitor sees the last few messages
# they signed; the name is remembered between visits.
use strict;
use warnings;

my $KEEP    = 5;      # messages kept in the session (cookies are small)
my $MAX_LEN = 200;    # characters per field

sub url_decode {
    my $s = shift // '';
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    return $s;
}

sub url_encode {
    my $s = shift // '';
    $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord($1))/ge;
    return $s;
}

sub parse_form {
    my %form;
    for my $pair (split /&/, shift // '') {
        my ($k, $v) = split /=/, $pair, 2;
        next unless defined $k && length $k;
        $form{url_decode($k)} = url_decode($v);
    }
    return %form;
}

sub html {
    my $s = shift // '';
    $s =~ s/&/&amp;/g;
    $s =~ s/</&lt;/g;
    $s =~ s/>/&gt;/g;
    $s =~ s/"/&quot;/g;
    $s =~ s/'/&#39;/g;
    return $s;
}

sub clip {
    my $s = shift // '';
    $s =~ s/[\r\n\t]+/ /g;
    $s =~ s/^\s+|\s+$//g;
    return substr($s, 0, $MAX_LEN);
}

my %session = parse_form($ENV{HTTP_SESSION});
my @messages = grep { defined && length } map { $session{"msg$_"} } 1 .. $KEEP;
my $self = $ENV{SCRIPT_NAME} // '/cgi-bin/guestbook.pl';

if (($ENV{REQUEST_METHOD} // 'GET') eq 'POST') {
    my $len = $ENV{CONTENT_LENGTH} // 0;
    $len = 0 unless $len =~ /^\d+$/;
    $len = 65536 if $len > 65536;
    my $body = '';
    read(STDIN, $body, $len) if $len;
    my %form = parse_form($body);
    my $name = clip($form{name});
    my $text = clip($form{message});
    my @update;
    if (length $name && length $text) {
        unshift @messages, "$name: $text";
        splice @messages, $KEEP if @messages > $KEEP;
        push @update, 'name=' . url_encode($name);
        push @update, "msg$_=" . url_encode($messages[$_ - 1] // '') for 1 .. $KEEP;
    }
    # Post/redirect/get: a reload does not sign twice.
    print "Status: 303 See Other\r\n";
    print 'X-Replace-Session: ' . join('&', @update) . "\r\n" if @update;
    print "Location: $self\r\n";
    print "Content-Type: text/plain\r\n\r\n";
    print "See $self\n";
    exit 0;
}

my $name = html($session{name});
print "Content-Type: text/html; charset=utf-8\r\n";
print "Cache-Control: no-store\r\n\r\n";
print <<"HTML";
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Guestbook</title>
<style>body{font-family:sans-serif;margin:2em;max-width:40em}label{display:block;margin:.5em 0}</style>
</head><body>
<h1>Guestbook</h1>
<form method="post" action="@{[html($self)]}">
<label>Name <input name="name" value="$name" maxlength="$MAX_LEN" required></label>
<label>Message <input name="message" maxlength="$MAX_LEN" required size="50"></label>
<button>Sign</button>
</form>
<h2>Your last messages</h2>
HTML
if (@messages) {
    print "<ul>\n";
    print '<li>' . html($_) . "</li>\n" for @messages;
    print "</ul>\n";
} else {
    print "<p>None yet.</p>\n";
}
print "<p><small>Served by node " . html($ENV{SHOAL_NODE} // '?') . ".</small></p>\n</body></html>\n";
