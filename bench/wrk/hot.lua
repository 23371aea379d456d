-- hot: half payouts debiting one account, half deposits through @world (CREDIT).
request = function()
  local a = math.random(0, accounts - 1)
  if math.random() < 0.5 then
    return wrk.format("POST", "/v1/transactions/immediate", json_headers, string.format(
      '{"type":"DEBIT","account":"payer","currency":"USD","amount":"1","counterparty":"a%d"}', a))
  end
  return wrk.format("POST", "/v1/transactions/immediate", json_headers, string.format(
    '{"type":"CREDIT","account":"a%d","currency":"USD","amount":"1"}', a))
end

function on_response(status, body)
  if status == 201 then completed = completed + 1 end
end
