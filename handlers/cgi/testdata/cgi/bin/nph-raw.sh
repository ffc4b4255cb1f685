#!/bin/sh
printf 'HTTP/1.1 299 Raw Status\r\nX-Raw: 1\r\nContent-Type: text/plain\r\n\r\nraw body\n'
