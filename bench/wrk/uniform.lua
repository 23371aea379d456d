-- uniform: immediate transfers of 1 between two random accounts a0..a9999.
request = transfer_request

function on_response(status, body)
  if status == 201 then completed = completed + 1 end
end
